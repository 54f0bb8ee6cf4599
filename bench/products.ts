/**
 * The reference CNN's three dense-layer products on the wasm backend, with fused multiply-adds
 * (relaxed SIMD, the default where the engine has it) and with multiply and add apart
 * (TENSORFLEET_WASM_FMA=0's path), interleaved call by call in one process so the ratio is fair:
 *   forward          x [B,5408] @ W [5408,128]
 *   weight gradient  x^T @ dy  (the SIMD product reading x^T in place)
 *   the same with x^T materialised first (a transpose, then the untransposed product)
 *   input gradient   dy @ W^T  (run as (W @ dy^T)^T)
 * Times are per call, the product left on the wasm heap (no read-back), medians over --calls.
 * Also times the SIMD product kernel alone on one cached panel (GFLOP/s). Prints a table and
 * writes bench/results/products.json.
 *
 *   npx tsx bench/products.ts [--batch 128] [--calls 60] [--warmup 10] [--name products]
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { selectBackend } from '../src/model/backend.js';
import { simdKernelsFor, simdProductKind, simdTuning } from '../src/model/kernels/simd.js';
import { transposeInnerMatrix } from '../src/model/kernels/transpose.js';
import { checkResultName, median, parseArgs, printTable, writeResult } from './lib.js';

const a = parseArgs(process.argv.slice(2), { batch: 128, calls: 60, warmup: 10, name: 'products' });
checkResultName(a.name);
const info = await selectBackend('wasm');
const backend = tf.backend() as BackendWasm;
if (simdProductKind(backend) !== 'fused') {
  throw new Error(`this engine has no fused multiply-add for wasm (products: ${simdProductKind(backend)}); nothing to compare`);
}

const B = a.batch;
const x = tf.randomNormal([B, 5408], 0, 1, 'float32', 1);
const W = tf.randomNormal([5408, 128], 0, 1, 'float32', 2);
const dy = tf.randomNormal([B, 128], 0, 1, 'float32', 3);
const products: Record<string, () => tf.Tensor> = {
  forward: () => tf.matMul(x, W),
  'weight gradient': () => tf.matMul(x, dy, true, false),
  'weight gradient, x^T materialised': () => {
    const xT = tf.engine().makeTensorFromTensorInfo(transposeInnerMatrix(x, backend, tf.getKernel('Transpose', 'wasm')!.kernelFunc));
    const y = tf.matMul(xT, dy);
    xT.dispose();
    return y;
  },
  'input gradient': () => tf.matMul(dy, W, false, true),
};
const flops = 2 * B * 5408 * 128;

const times: Record<string, { fused: number[]; separate: number[] }> = {};
for (let call = 0; call < a.warmup + a.calls; call++) {
  for (const fused of [true, false]) {
    simdTuning.fused = fused;
    for (const [name, product] of Object.entries(products)) {
      const start = performance.now();
      const y = product();
      const ms = performance.now() - start; // wasm kernels run synchronously inside the op
      y.dispose();
      if (call >= a.warmup) (times[name] ??= { fused: [], separate: [] })[fused ? 'fused' : 'separate'].push(ms);
    }
  }
}

/** The 2-row by 16-column kernel alone: 64 row pairs over one packed panel of K rows (in cache). */
function kernelRate(fused: boolean, k: number): number {
  simdTuning.fused = fused;
  const simd = simdKernelsFor(backend)!;
  const aT = tf.randomNormal([128, k], 0, 1, 'float32', 4);
  const panel = tf.randomNormal([k, 16], 0, 1, 'float32', 5);
  const out = tf.zeros([128, 16]);
  const [pa, pp, po] = [aT, panel, out].map((t) => backend.getMemoryOffset(t.dataId));
  const samples: number[] = [];
  for (let r = 0; r < a.warmup + a.calls; r++) {
    const start = performance.now();
    for (let rep = 0; rep < 20; rep++) simd.gemm2x16(pa!, k * 4, 4, pp!, 64, po!, 64, k, 64);
    if (r >= a.warmup) samples.push((performance.now() - start) / 20);
  }
  tf.dispose([aT, panel, out]);
  return (2 * 128 * k * 16) / median(samples) / 1e6;
}
const kernel = { fused: kernelRate(true, 256), separate: kernelRate(false, 256) };
simdTuning.fused = true;

const rows = Object.entries(times).map(([name, t]) => {
  const [f, s] = [median(t.fused), median(t.separate)];
  return { product: name, fusedMs: f, separateMs: s, speedup: s / f, fusedGflops: flops / f / 1e6, separateGflops: flops / s / 1e6 };
});
console.log(`backend ${info.name} (${info.device}), batch ${B}, ${a.calls} interleaved calls each after ${a.warmup} warm-up`);
printTable(
  ['product', 'fused ms', 'separate ms', 'separate / fused', 'fused GFLOP/s', 'separate GFLOP/s'],
  [
    ...rows.map((r) => [r.product, r.fusedMs, r.separateMs, `${r.speedup.toFixed(2)}x`, r.fusedGflops, r.separateGflops]),
    ['kernel alone (K 256, in cache)', '-', '-', `${(kernel.fused / kernel.separate).toFixed(2)}x`, kernel.fused, kernel.separate],
  ],
);
console.log(`written to ${writeResult(a.name, { backend: info.device, batch: B, calls: a.calls, products: rows, kernelGflops: kernel })}`);
