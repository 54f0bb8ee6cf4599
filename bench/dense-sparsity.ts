/**
 * How many of the dense layer's inputs are zero, and how many of them a SIMD product could skip.
 * The reference CNN's dense layer reads the flattened output of ReLU then max pooling; a zero
 * input contributes nothing to the forward product, the weight gradient or (through the ReLU
 * mask) the input gradient, but a product vectorized over blocks can skip a term only when
 * the whole block is zero. This trains the model single-process (Keras fit, Adam, batch 64) on
 * the first --samples samples and reports, before and after, for a batch of 32 and of 128:
 * zero elements, columns zero across the whole batch (skippable in the weight gradient), and
 * 4-row by 1-column blocks that are all zero (skippable in a 4-row product kernel).
 *
 *   npm run build && npx tsx bench/dense-sparsity.ts [--samples 12800]
 */
import * as tf from '@tensorflow/tfjs';
import { IMAGE_SIZE, NUM_CLASSES, loadMnist } from '../src/data/mnist.js';
import { gatherBatch, rangeIndices } from '../src/data/batch.js';
import { selectBackend } from '../src/model/backend.js';
import { initialWeights } from '../src/model/init.js';
import { assignWeights, layoutOf } from '../src/model/variables.js';
import { createModel } from '../src/model/zoo.js';
import { machineInfo, parseArgs, printTable, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { samples: 12800, seed: 42 });
await selectBackend('wasm');
const data = loadMnist({ trainLimit: a.samples, skipTest: true });
const model = createModel('mnist-cnn');
const layout = layoutOf(model);
assignWeights(model, layout, initialWeights(layout, a.seed));
model.compile({ optimizer: tf.train.adam(0.001), loss: 'categoricalCrossentropy' });
const all = gatherBatch(data.train, rangeIndices(0, data.train.count));
const x = tf.tensor4d(all.pixels, [all.count, IMAGE_SIZE, IMAGE_SIZE, 1]);
const y = tf.tensor2d(all.oneHot, [all.count, NUM_CLASSES]);
const flatten = tf.model({ inputs: model.inputs, outputs: model.getLayer('flatten').output as tf.SymbolicTensor });

function measure(when: string) {
  return [32, 128].map((batch) => {
    const input = flatten.predict(x.slice([0, 0, 0, 0], [batch, IMAGE_SIZE, IMAGE_SIZE, 1])) as tf.Tensor2D;
    const values = input.dataSync() as Float32Array;
    const k = input.shape[1];
    input.dispose();
    let zeros = 0;
    for (const v of values) if (v === 0) zeros++;
    let zeroColumns = 0;
    for (let c = 0; c < k; c++) {
      let zero = true;
      for (let r = 0; r < batch && zero; r++) zero = values[r * k + c] === 0;
      if (zero) zeroColumns++;
    }
    let zeroBlocks = 0;
    for (let r0 = 0; r0 < batch; r0 += 4) {
      for (let c = 0; c < k; c++) {
        let zero = true;
        for (let r = r0; r < r0 + 4 && zero; r++) zero = values[r * k + c] === 0;
        if (zero) zeroBlocks++;
      }
    }
    return { when, batch, zeroElements: zeros / values.length, zeroColumns: zeroColumns / k, zeroBlocks4x1: zeroBlocks / ((batch / 4) * k) };
  });
}

const rows = measure('initial weights');
await model.fit(x, y, { batchSize: 64, epochs: 1, verbose: 0, shuffle: false });
rows.push(...measure(`after ${data.train.count} samples`));
const pct = (f: number) => `${(100 * f).toFixed(1)} %`;
printTable(
  ['weights', 'batch', 'zero inputs', 'columns zero over the batch', '4x1 blocks zero'],
  rows.map((r) => [r.when, r.batch, pct(r.zeroElements), pct(r.zeroColumns), pct(r.zeroBlocks4x1)]),
);
console.log(`written to ${writeResult('dense-sparsity', { name: 'dense-sparsity', date: new Date().toISOString(), machine: machineInfo(), options: a, rows })}`);
