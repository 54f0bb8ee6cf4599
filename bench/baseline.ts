/**
 * The baseline a TensorFlow.js user has today: one process, `model.fit` with Adam(1e-3) and
 * categorical cross-entropy, on the same backend, model, data and global batch as the cluster.
 * Prints one JSON line: per-epoch test accuracy and the training images/s, over all steps
 * (`imagesPerSecond`) and after the first WARMUP_STEPS batches of the run
 * (`steadyImagesPerSecond`: samples of the later batches over the training time since the end of
 * the fifth, as the run report and bench/peers/pytorch_ddp.py count; null with 5 batches or
 * fewer). The batches are timed by an onBatchEnd callback, which makes fit read each batch's loss.
 *
 *   tsx bench/baseline.ts --epochs 1 --batch-size 128 [--train-limit K] [--backend wasm]
 */
import * as tf from '@tensorflow/tfjs';
import { loadMnist } from '../src/data/mnist.js';
import { gatherBatch, rangeIndices } from '../src/data/batch.js';
import { selectBackend, type BackendChoice } from '../src/model/backend.js';
import { evaluateModel } from '../src/model/evaluate.js';
import { initialWeights } from '../src/model/init.js';
import { assignWeights, layoutOf } from '../src/model/variables.js';
import { createModel } from '../src/model/zoo.js';
import { WARMUP_STEPS } from '../src/coordinator/steady-rate.js';
import { parseArgs } from './lib.js';

const args = parseArgs(process.argv.slice(2), { epochs: 1, batchSize: 128, trainLimit: 0, testLimit: 0, backend: 'wasm', seed: 42, model: 'mnist-cnn' });
const backend = await selectBackend(args.backend as BackendChoice);
const data = loadMnist({ trainLimit: args.trainLimit, testLimit: args.testLimit });
const model = createModel(args.model);
const layout = layoutOf(model);
assignWeights(model, layout, initialWeights(layout, args.seed));
model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });

const all = gatherBatch(data.train, rangeIndices(0, data.train.count));
const x = tf.tensor4d(all.pixels, [data.train.count, 28, 28, 1]);
const y = tf.tensor2d(all.oneHot, [data.train.count, 10]);

const epochs: { epoch: number; testAccuracy: number; testLoss: number; trainSeconds: number; loss: number }[] = [];
let trainMs = 0;
// After the warm-up: batches done, the samples of the later ones and the time since the fifth's end.
let batches = 0;
let steadySamples = 0;
let steadyMs = 0;
for (let epoch = 0; epoch < args.epochs; epoch++) {
  const start = performance.now();
  let warmEnd = batches >= WARMUP_STEPS ? start : undefined;
  const onBatchEnd = async (_batch: number, logs?: tf.Logs) => {
    if (++batches > WARMUP_STEPS) steadySamples += logs!.size!;
    else if (batches === WARMUP_STEPS) warmEnd = performance.now();
  };
  // yieldEvery 'never': the callback adds no waits of its own (fit without callbacks has none).
  const history = await model.fit(x, y, { batchSize: args.batchSize, epochs: 1, shuffle: true, verbose: 0, yieldEvery: 'never', callbacks: { onBatchEnd } });
  const end = performance.now();
  const ms = end - start;
  trainMs += ms;
  if (warmEnd !== undefined) steadyMs += end - warmEnd;
  const evaluation = await evaluateModel(model, data.test);
  const loss = history.history.loss![0] as number;
  epochs.push({ epoch, testAccuracy: evaluation.accuracy, testLoss: evaluation.loss, trainSeconds: ms / 1000, loss });
  process.stderr.write(`baseline epoch ${epoch + 1}/${args.epochs}: loss ${loss.toFixed(4)} test accuracy ${evaluation.accuracy} (${(ms / 1000).toFixed(1)} s)\n`);
}
console.log(
  JSON.stringify({
    backend: backend.name,
    model: args.model,
    batchSize: args.batchSize,
    trainSamples: data.train.count,
    epochs,
    testAccuracy: epochs[epochs.length - 1]!.testAccuracy,
    imagesPerSecond: (data.train.count * args.epochs * 1000) / trainMs,
    warmupSteps: WARMUP_STEPS,
    steadyImagesPerSecond: batches > WARMUP_STEPS && steadyMs > 0 ? (steadySamples * 1000) / steadyMs : null,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  }),
);
