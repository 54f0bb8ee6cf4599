/** Errors of the model component. */

export class UnknownModelError extends TypeError {
  override readonly name = 'UnknownModelError';
  constructor(readonly model: string, readonly accepted: readonly string[]) {
    super(`unknown model '${model}'; accepted: ${accepted.join(', ')}`);
  }
}

/** A requested compute backend cannot be loaded on this machine. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(readonly backend: string, reason: string, options?: { cause?: unknown }) {
    super(`backend '${backend}' is not available: ${reason}`, options);
  }
}

/** A flat weight or gradient buffer does not fit the model's variables. */
export class LayoutMismatchError extends Error {
  override readonly name = 'LayoutMismatchError';
}
