/**
 * How the saved-model tools end: the expected failures (bad input, unreadable data, a backend
 * that cannot load) are one line on stderr and exit 1; anything else prints its stack.
 */
import { EXIT_FAILURE } from '../common/cli.js';
import { DataFileError } from '../data/errors.js';
import { BackendUnavailableError } from '../model/errors.js';
import { ToolInputError } from './saved-model.js';

export function runTool(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (err) => {
      const expected = err instanceof ToolInputError || err instanceof DataFileError || err instanceof BackendUnavailableError;
      process.stderr.write(`${name}: ${expected ? (err as Error).message : ((err as Error).stack ?? err)}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}
