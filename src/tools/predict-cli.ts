#!/usr/bin/env node
/**
 * `predict --model DIR --image FILE.png` (or `--index K` into the test set): the predicted class
 * and the probability of every class. Exit codes: 0 done, 1 the model, image or data cannot be
 * used (one line says why), 2 usage.
 */
import { Command, Option } from 'commander';
import { EXIT_OK, parseInteger, parseOrExit, usageError } from '../common/cli.js';
import { loadMnist, PIXELS } from '../data/mnist.js';
import { BACKEND_CHOICES, selectBackend, type BackendChoice } from '../model/backend.js';
import { runTool } from './run-tool.js';
import { classify, loadSavedModel, readDigitPng, ToolInputError, type InvertMode } from './saved-model.js';

const program = new Command('predict')
  .description('Classify one 28x28 image with a saved model: a PNG file, or an image of the test set.')
  .addOption(new Option('--model <dir>', 'folder of the saved model (coordinator --save-model DIR), or its model.json').makeOptionMandatory())
  .addOption(new Option('--image <file>', 'a 28x28 PNG (grayscale or color; a dark digit on a light background is inverted)'))
  .addOption(new Option('--index <k>', 'the K-th image of the test set instead of --image').argParser(parseInteger))
  .addOption(new Option('--data-dir <dir>', 'with --index: folder with the MNIST IDX files (default: the embedded MNIST)').env('TENSORFLEET_DATA_DIR'))
  .addOption(new Option('--invert <mode>', 'invert the PNG (MNIST digits are white on black)').choices(['auto', 'yes', 'no']).default('auto'))
  .addOption(new Option('--backend <name>', 'compute backend').choices(BACKEND_CHOICES).default('auto').env('TENSORFLEET_BACKEND'))
  .addOption(new Option('--json', 'print one JSON object'))
  .allowExcessArguments(false);

parseOrExit(program, process.argv);
const flags = program.opts();
if ((flags.image === undefined) === (flags.index === undefined)) usageError('predict', 'give either --image FILE.png or --index K');
if (flags.index !== undefined && flags.index < 0) usageError('predict', `--index must be 0 or more; got ${flags.index}`);

async function main(): Promise<number> {
  let pixels: Uint8Array;
  let source: string;
  let label: number | undefined;
  let inverted = false;
  if (flags.image !== undefined) {
    ({ pixels, inverted } = readDigitPng(flags.image, flags.invert as InvertMode));
    source = flags.image;
  } else {
    const k = flags.index as number;
    const data = loadMnist({ dataDir: flags.dataDir, testLimit: k + 1, skipTrain: true });
    if (k >= data.test.count) throw new ToolInputError(`--index ${k}: the test set of ${data.dataDir} has ${data.test.count} images`);
    pixels = data.test.images.slice(k * PIXELS, (k + 1) * PIXELS);
    label = data.test.labels[k];
    source = `test image ${k} of ${data.dataDir}`;
  }
  await selectBackend(flags.backend as BackendChoice);
  const { model, path } = await loadSavedModel(flags.model);
  const probs = Array.from(await classify(model, pixels));
  model.dispose();
  let predicted = 0;
  for (let c = 1; c < probs.length; c++) if (probs[c]! > probs[predicted]!) predicted = c;
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ model: path, source, predicted, probabilities: probs, ...(label !== undefined ? { label } : {}), inverted })}\n`);
    return EXIT_OK;
  }
  const lines = [
    `class ${predicted} (probability ${probs[predicted]!.toFixed(4)})${label !== undefined ? `, true label ${label}${label === predicted ? '' : ' (wrong)'}` : ''}`,
    `${source}${inverted ? ' (inverted: dark digit on a light background)' : ''}, model ${path}`,
    'class  probability',
    ...probs.map((p, c) => `${String(c).padStart(5)}  ${p.toFixed(4).padStart(11)}  ${'#'.repeat(Math.round(p * 40))}`.trimEnd()),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return EXIT_OK;
}

runTool('predict', main);
