/**
 * Why: the stock tfjs wasm backend cannot train a Conv2D model (it has no
 * `Conv2DBackpropFilter` kernel), its matmuls are several times slower with
 * transposeA/transposeB set, which is exactly how dense-layer gradients call them,
 * and its MaxPoolGrad, leading-axes Sum (bias gradients) and copying
 * Identity/Cast cost a training step more than its matmuls.
 *
 * Setup: tfjs-core runs every registered kernel's `setupFunc` on each
 * `tf.setBackend(name)` (engine.setupRegisteredKernels). Each replacement
 * config carries the stock `setupFunc` (it cwraps the C++ entry point that the
 * wrapper or its fallback calls), so registering before `setBackend('wasm')`
 * works; registering after also works because the stock setup already ran for
 * the live backend and none of our kernels needs a setup of its own.
 */
import * as tf from '@tensorflow/tfjs';
// Side effect: registers the wasm backend and its stock kernels, which must
// exist before we can capture/replace them.
import '@tensorflow/tfjs-backend-wasm';
import { createNoTransposeMatMulConfig } from './batch-mat-mul.js';
import { conv2dBackpropFilterConfig } from './conv2d-backprop-filter.js';
import { convReluPoolConfigs, registerConvReluPoolGradient } from './conv-relu-pool.js';
import { createConv2DConfig } from './conv2d.js';
import { createAddConfig } from './elementwise.js';
import { createCastConfig, createIdentityConfig } from './identity-cast.js';
import { createMaxPoolGradConfig } from './max-pool-grad.js';
import { registerReluGradient, reluGradConfig } from './relu-grad.js';
import { createSumConfig } from './sum.js';

const BACKEND = 'wasm';
/**
 * Stock kernels replaced by a wrapper around the stock kernel function: the
 * matmuls never get transpose flags; MaxPoolGrad and Sum get JS fast paths;
 * Identity and same-dtype Cast share data instead of copying it; Add gets a
 * wasm SIMD path for same-shape and row-broadcast float32; a single-channel 3x3
 * Conv2D runs as im2col + matmul.
 */
const REPLACED: ReadonlyArray<readonly [string, (stock: tf.KernelConfig) => tf.KernelConfig]> = [
  ['BatchMatMul', createNoTransposeMatMulConfig],
  ['_FusedMatMul', createNoTransposeMatMulConfig],
  ['MaxPoolGrad', createMaxPoolGradConfig],
  ['Sum', createSumConfig],
  ['Identity', createIdentityConfig],
  ['Cast', createCastConfig],
  ['Add', createAddConfig],
  ['Conv2D', createConv2DConfig],
];
/** Marks configs registered by this module (survives duplicate module loads). */
const MARK: unique symbol = Symbol.for('tensorfleet.wasm-kernel');

type MarkedConfig = tf.KernelConfig & { [MARK]?: true };

function isOurs(config: tf.KernelConfig | undefined): boolean {
  return config != null && (config as MarkedConfig)[MARK] === true;
}

function mark(config: tf.KernelConfig): tf.KernelConfig {
  const marked: MarkedConfig = { ...config };
  marked[MARK] = true;
  return marked;
}

/** Kernel names this module registers (or replaces) for the wasm backend. */
export function kernelNamesProvided(): string[] {
  return [...ADDED.map((c) => c.kernelName), ...REPLACED.map(([name]) => name)];
}

/**
 * Kernels the stock wasm backend does not have: the filter gradient, the one-pass ReLU gradient
 * (relu-grad.ts) and the fused convolution block with its gradient kernels (conv-relu-pool.ts).
 */
const ADDED: readonly tf.KernelConfig[] = [conv2dBackpropFilterConfig, reluGradConfig, ...convReluPoolConfigs];

/**
 * Registers the extra/replacement wasm kernels. Idempotent, and valid both
 * before and after `await tf.setBackend('wasm')`.
 */
export function registerWasmKernels(): void {
  for (const config of ADDED) {
    const existing = tf.getKernel(config.kernelName, BACKEND);
    if (isOurs(existing)) continue;
    if (existing != null) tf.unregisterKernel(config.kernelName, BACKEND);
    tf.registerKernel(mark(config));
  }
  registerReluGradient();
  registerConvReluPoolGradient();
  for (const [name, replace] of REPLACED) {
    const stock = tf.getKernel(name, BACKEND);
    if (stock == null) {
      throw new Error(`registerWasmKernels: stock kernel '${name}' is not registered for '${BACKEND}'`);
    }
    if (isOurs(stock)) continue;
    const replacement = mark(replace(stock));
    tf.unregisterKernel(name, BACKEND);
    tf.registerKernel(replacement);
  }
}
