/** Errors of the worker component. */

/** The coordinator went away or ended the stream without a Stop. */
export class CoordinatorLostError extends Error {
  override readonly name = 'CoordinatorLostError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The coordinator sent something this worker cannot act on. */
export class UnexpectedMessageError extends Error {
  override readonly name = 'UnexpectedMessageError';
}

/** The coordinator refused this worker for good (wrong token, bad configuration...). */
export class RejectedError extends Error {
  override readonly name = 'RejectedError';
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** A step's wait for weights ended because the co-located shards were re-formed: the coordinator aborted that step and sends the next. */
export class SupersededError extends Error {
  override readonly name = 'SupersededError';
}
