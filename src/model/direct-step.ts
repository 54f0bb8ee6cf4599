/**
 * A worker's step without tfjs-core's gradient tape, on the wasm backend, for the models it
 * recognises: an optional fused convolution block on the input (kernels/conv-relu-pool.ts), a
 * Flatten, Dense layers with bias and ReLU, and a last Dense with bias and softmax, trained on
 * the categorical cross-entropy of loss.ts (the reference CNN and the mlp of zoo.ts).
 *
 * Why: at batch 32 a step runs about 85 kernels through the engine (27 of them Identity clones
 * for the tape, 14 Reshapes), and the engine's bookkeeping around each (tensor objects, scopes,
 * the tape and its backward walk) costs about 2 ms of the step's 13, more than the convolution's
 * forward kernel. Here every kernel is called directly with its inputs (the same registered
 * kernel functions, the same inputs and attributes, in the order the tape would call them), the
 * loss's gradient for the [B, classes] tail is computed in JavaScript with every operation
 * rounded to float32 as the kernels round it, and nothing else is made: the same bits as the
 * tape (tests/unit/direct-step.test.ts compares them for both models), at a fraction of the
 * bookkeeping.
 *
 * `directStepTuning.enabled = false` (or TENSORFLEET_DIRECT_STEP=0 for a process) keeps the tape.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { Batch } from '../data/batch.js';
import { IMAGE_SIZE, NUM_CLASSES } from '../data/mnist.js';
import { forwardTuning, isConvReluPoolPair } from './forward.js';
import { CONV_RELU_POOL, CONV_RELU_POOL_BIAS_GRAD, CONV_RELU_POOL_GRAD, convReluPoolAvailable, convReluPoolShapes, UNIT_CONV } from './kernels/conv-relu-pool.js';
import { RELU_GRAD } from './kernels/relu-grad.js';
import { EPSILON } from './loss.js';
import type { VariableLayout } from './variables.js';

export const directStepTuning = { enabled: process.env.TENSORFLEET_DIRECT_STEP !== '0' };

type Info = tf.TensorInfo;

/** The model as the direct step runs it: variable indices in the layout (kernel, bias). */
interface Plan {
  conv: { filter: number; bias: number } | undefined;
  /** Dense layers in order; every one but the last has ReLU, the last has softmax. */
  dense: Array<{ kernel: number; bias: number }>;
}

const f32 = Math.fround;

function planOf(model: tf.Sequential, variables: tf.Variable[]): Plan | undefined {
  const index = (w: tf.LayerVariable) => variables.findIndex((v) => v === w.read());
  const layers = model.layers;
  let i = 0;
  let conv: Plan['conv'];
  if (layers.length > 1 && isConvReluPoolPair(layers[0]!, layers[1]!)) {
    const [filter, bias] = layers[0]!.weights;
    if (!filter || !bias || !convReluPoolShapes([1, IMAGE_SIZE, IMAGE_SIZE, 1], filter.shape as number[], bias.shape as number[])) return undefined;
    conv = { filter: index(filter), bias: index(bias) };
    i = 2;
  }
  if (layers[i]?.getClassName() !== 'Flatten') return undefined;
  i++;
  const dense: Plan['dense'] = [];
  for (; i < layers.length; i++) {
    const layer = layers[i]!;
    const c = layer.getConfig();
    const last = i === layers.length - 1;
    if (layer.getClassName() !== 'Dense' || c.useBias !== true || c.activation !== (last ? 'softmax' : 'relu') || layer.weights.length !== 2) return undefined;
    const [kernel, bias] = layer.weights;
    dense.push({ kernel: index(kernel!), bias: index(bias!) });
  }
  const used = [...(conv ? [conv.filter, conv.bias] : []), ...dense.flatMap((d) => [d.kernel, d.bias])];
  if (dense.length === 0 || used.some((u) => u < 0) || new Set(used).size !== variables.length) return undefined;
  if (model.outputs[0]?.shape[1] !== NUM_CLASSES) return undefined;
  return { conv, dense };
}

/** Runs the step for one model's variables; undefined where it does not apply (then the tape runs). */
export class DirectStep {
  /** True when it runs the next step: the backend can, and a model starting with the fused block still fuses it (forwardTuning). */
  applies(): boolean {
    return DirectStep.available() && (this.plan.conv === undefined || forwardTuning.fuseConvBlocks);
  }

  private constructor(private readonly plan: Plan, private readonly variables: tf.Variable[], private readonly layout: VariableLayout) {}

  static for(model: tf.Sequential, variables: tf.Variable[], layout: VariableLayout): DirectStep | undefined {
    if (!DirectStep.available()) return undefined;
    if (variables.some((v) => v.dtype !== 'float32')) return undefined;
    const plan = planOf(model, variables);
    return plan ? new DirectStep(plan, variables, layout) : undefined;
  }

  /** True while the active backend can run it (checked at every step: tests switch backends). */
  static available(): boolean {
    return directStepTuning.enabled && tf.getBackend() === 'wasm' && tf.getKernel(RELU_GRAD, 'wasm') != null && convReluPoolAvailable();
  }

  /** Writes d(mean loss)/d(weights) into `out` (flat layout) and returns the mean loss. */
  run(batch: Batch, out: Float32Array): number {
    const backend = tf.backend() as BackendWasm;
    const made: Info[] = [];
    const keep = <T extends Info | Info[]>(r: T): T => (made.push(...(Array.isArray(r) ? r : [r])), r);
    const callAll = (name: string, inputs: Record<string, Info>, attrs: object = {}): Info | Info[] => {
      const kernel = tf.getKernel(name, 'wasm');
      if (!kernel) throw new Error(`direct step: no wasm kernel ${name}`);
      return keep(kernel.kernelFunc({ inputs, backend, attrs } as unknown as Parameters<tf.KernelFunc>[0]) as Info | Info[]);
    };
    const call = (name: string, inputs: Record<string, Info>, attrs: object = {}): Info => callAll(name, inputs, attrs) as Info;
    const input = (values: Float32Array, shape: number[]): Info => keep({ dataId: backend.write(values, shape, 'float32'), shape, dtype: 'float32' });
    /** The same memory under another shape, as the Reshape kernel gives it (not disposed on its own). */
    const as = (t: Info, shape: number[]): Info => ({ dataId: t.dataId, shape, dtype: t.dtype });
    const heap = (t: Info) => backend.typedArrayFromHeap(t) as Float32Array;
    const v = (i: number): Info => {
      const x = this.variables[i]!;
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    };
    const grads = new Array<Info>(this.variables.length);
    const B = batch.count;
    const { conv, dense } = this.plan;
    try {
      // Forward, as applyForTraining and loss.ts record it.
      const x = input(batch.pixels, [B, IMAGE_SIZE, IMAGE_SIZE, 1]);
      let pooled: Info | undefined;
      let codes: Info | undefined;
      let h: Info;
      if (conv) {
        [pooled, codes] = callAll(CONV_RELU_POOL, { x, filter: v(conv.filter), bias: v(conv.bias) }) as Info[];
        h = as(pooled!, [B, pooled!.shape.slice(1).reduce((p, d) => p * d, 1)]);
      } else {
        h = as(x, [B, IMAGE_SIZE * IMAGE_SIZE]);
      }
      const hidden: Array<{ input: Info; pre: Info }> = [];
      for (const d of dense.slice(0, -1)) {
        // Dense with ReLU under a gradient: matMul, add the bias, relu (fused.matMul unfused).
        const pre = call('Add', { a: call('BatchMatMul', { a: h, b: v(d.kernel) }, { transposeA: false, transposeB: false }), b: v(d.bias) });
        hidden.push({ input: h, pre });
        h = call('Relu', { x: pre });
      }
      // The last Dense: _FusedMatMul on 3-D views (linear, no bias), the bias added, softmax.
      const last = dense[dense.length - 1]!;
      const W = v(last.kernel);
      const [K, C] = W.shape as [number, number];
      const a3 = as(h, [1, B, K]);
      const b3 = as(W, [1, K, C]);
      const res = call('_FusedMatMul', { a: a3, b: b3 }, { transposeA: false, transposeB: false, activation: 'linear', leakyreluAlpha: 0.2 });
      const probs = call('Softmax', { logits: call('Add', { a: as(res, [B, C]), b: v(last.bias) }) }, { dim: 1 });
      const clipped = call('ClipByValue', { x: probs }, { clipValueMin: EPSILON, clipValueMax: 1 - EPSILON });
      const y = input(batch.oneHot, [B, C]);
      const perSample = call('Neg', { x: call('Sum', { x: call('Multiply', { a: y, b: call('Log', { x: clipped }) }) }, { axis: -1, keepDims: false }) });
      const loss = heap(call('Mean', { x: perSample }, { axis: null, keepDims: false }))[0]!;

      // The loss's gradient with respect to the logits, as the tape's gradient kernels compute it,
      // one float32 rounding per operation: mean -> 1/B, neg, sum (broadcast), mul by the one-hot,
      // log (divide by the clipped probabilities), clip (zero outside [min, max]), softmax.
      const p = heap(probs);
      const c = heap(clipped);
      const oneHot = batch.oneHot;
      const lo = f32(EPSILON);
      const hi = f32(1 - EPSILON);
      const g = -f32(1 / B);
      const dyTimesY = new Float32Array(B * C);
      for (let k = 0; k < B * C; k++) {
        const pk = p[k]!;
        const dLog = f32(f32(g * oneHot[k]!) / c[k]!);
        dyTimesY[k] = f32((pk >= lo && pk <= hi ? dLog : 0) * pk);
      }
      // Softmax's gradient sums over its dim, which softmax() normalised to 1.
      const rowSums = heap(call('Sum', { x: input(dyTimesY, [B, C]) }, { axis: [1], keepDims: true }));
      const dLogits = new Float32Array(B * C);
      const p2 = heap(probs); // views again: the calls above may have grown the heap
      for (let r = 0; r < B; r++) for (let j = 0; j < C; j++) dLogits[r * C + j] = f32(dyTimesY[r * C + j]! - f32(rowSums[r]! * p2[r * C + j]!));

      // Backward through the last Dense.
      let dy = input(dLogits, [B, C]);
      grads[last.bias] = call('Sum', { x: dy }, { axis: [0], keepDims: false });
      const dy3 = as(dy, [1, B, C]);
      let dh = call('BatchMatMul', { a: dy3, b: b3 }, { transposeA: false, transposeB: true });
      grads[last.kernel] = as(call('BatchMatMul', { a: a3, b: dy3 }, { transposeA: true, transposeB: false }), [K, C]);
      // And the hidden ones, last first.
      for (let k = hidden.length - 1; k >= 0; k--) {
        const d = dense[k]!;
        const { input: hin, pre } = hidden[k]!;
        dy = call(RELU_GRAD, { dy: as(dh, pre.shape), x: pre });
        grads[d.bias] = call('Sum', { x: dy }, { axis: [0], keepDims: false });
        if (k > 0 || conv) dh = call('BatchMatMul', { a: dy, b: v(d.kernel) }, { transposeA: false, transposeB: true });
        grads[d.kernel] = call('BatchMatMul', { a: hin, b: dy }, { transposeA: true, transposeB: false });
      }
      if (conv) {
        const dPooled = as(dh, pooled!.shape);
        const dpre = call(CONV_RELU_POOL_GRAD, { dy: dPooled, pooled: pooled!, codes: codes! });
        const filter = v(conv.filter);
        grads[conv.filter] = call('Conv2DBackpropFilter', { x, dy: dpre }, { ...UNIT_CONV, filterShape: filter.shape });
        grads[conv.bias] = call(CONV_RELU_POOL_BIAS_GRAD, { dy: dPooled, pooled: pooled!, codes: codes! });
      }
      grads.forEach((gi, i) => out.set(heap(gi), this.layout.specs[i]!.offset));
      return loss;
    } finally {
      for (const t of made) backend.disposeData(t.dataId);
    }
  }
}
