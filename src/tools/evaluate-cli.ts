#!/usr/bin/env node
/**
 * `evaluate --model DIR [--data-dir DIR]`: accuracy, loss and the confusion matrix of a saved
 * model on a test set (the embedded MNIST's by default). Exit codes: 0 done, 1 the model or the
 * data cannot be used (one line says why), 2 usage.
 */
import { Command, Option } from 'commander';
import { EXIT_OK, parseInteger, parseOrExit } from '../common/cli.js';
import { loadMnist, NUM_CLASSES } from '../data/mnist.js';
import { BACKEND_CHOICES, selectBackend, type BackendChoice } from '../model/backend.js';
import { evaluateModel, type Evaluation } from '../model/evaluate.js';
import { runTool } from './run-tool.js';
import { loadSavedModel, ToolInputError } from './saved-model.js';

const opt = (flags: string, description: string, env: string) => new Option(flags, description).env(`TENSORFLEET_${env}`);
const program = new Command('evaluate')
  .description('Accuracy, loss and confusion matrix of a saved model on a test set.')
  .addOption(new Option('--model <dir>', 'folder of the saved model (coordinator --save-model DIR), or its model.json').makeOptionMandatory())
  .addOption(opt('--data-dir <dir>', 'folder with the MNIST IDX files, raw or .gz (default: the embedded MNIST)', 'DATA_DIR'))
  .addOption(opt('--test-limit <k>', 'evaluate on the first K test samples only (0: all)', 'TEST_LIMIT').argParser(parseInteger).default(0))
  .addOption(new Option('--batch-size <n>', 'samples per forward pass').argParser(parseInteger).default(1000))
  .addOption(opt('--backend <name>', 'compute backend', 'BACKEND').choices(BACKEND_CHOICES).default('auto'))
  .addOption(new Option('--json', 'print one JSON object instead of tables'))
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();

function confusionTable(e: Evaluation): string {
  const m = e.confusion;
  const w = Math.max(5, String(Math.max(...m.flat())).length + 1);
  const cell = (s: string | number) => String(s).padStart(w);
  const lines = [`confusion matrix (rows: true label, columns: predicted)`, `${'label'.padEnd(6)}${Array.from({ length: NUM_CLASSES }, (_, c) => cell(c)).join('')}${'recall'.padStart(9)}`];
  for (let r = 0; r < NUM_CLASSES; r++) {
    const row = m[r]!;
    const total = row.reduce((a, b) => a + b, 0);
    lines.push(`${String(r).padEnd(6)}${row.map(cell).join('')}${(total ? `${((100 * row[r]!) / total).toFixed(1)}%` : '-').padStart(9)}`);
  }
  const precision = Array.from({ length: NUM_CLASSES }, (_, c) => {
    const col = m.reduce((a, row) => a + row[c]!, 0);
    return col ? `${Math.round((100 * m[c]![c]!) / col)}%` : '-';
  });
  lines.push(`${'prec.'.padEnd(6)}${precision.map(cell).join('')}`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  await selectBackend(flags.backend as BackendChoice);
  const data = loadMnist({ dataDir: flags.dataDir, testLimit: flags.testLimit, skipTrain: true });
  if (data.test.count === 0) throw new ToolInputError(`${data.dataDir}: the test set is empty`);
  const { model, path } = await loadSavedModel(flags.model);
  const e = await evaluateModel(model, data.test, Math.max(1, flags.batchSize));
  model.dispose();
  const correct = e.confusion.reduce((a, row, r) => a + row[r]!, 0);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ model: path, dataDir: data.dataDir, count: e.count, correct, accuracy: e.accuracy, loss: e.loss, confusion: e.confusion })}\n`);
  } else {
    process.stdout.write(
      `model ${path} on ${e.count} test samples of ${data.dataDir}\n` +
        `accuracy ${(e.accuracy * 100).toFixed(2)}% (${correct}/${e.count}), loss ${e.loss.toFixed(4)}\n\n${confusionTable(e)}\n`,
    );
  }
  return EXIT_OK;
}

runTool('evaluate', main);
