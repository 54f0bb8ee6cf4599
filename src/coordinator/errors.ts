/** Errors of the coordinator component. */

/** The membership changed while a step was in flight: the step is aborted and redone. */
export class MembershipChangedError extends Error {
  override readonly name = 'MembershipChangedError';
  constructor(readonly step: number, readonly reason: string) {
    super(`step ${step} aborted: ${reason}`);
  }
}

/** Training cannot go on (workers gone and none can come back, or the run was stopped). */
export class TrainingFailedError extends Error {
  override readonly name = 'TrainingFailedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A worker sent something the protocol does not allow; it is disconnected. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** A worker's Hello was refused; `code` is the gRPC status it is answered with. */
export class AdmissionError extends Error {
  override readonly name = 'AdmissionError';
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** The coordinator is draining (SIGTERM): the step in flight ran out of time and was aborted. */
export class DrainingError extends Error {
  override readonly name = 'DrainingError';
  constructor() {
    super('the coordinator is draining');
  }
}

/** --resume found a checkpoint of another job configuration. */
export class CheckpointMismatchError extends Error {
  override readonly name = 'CheckpointMismatchError';
}
