/**
 * The one place a compute backend is chosen. `auto` takes the first that loads: native
 * TensorFlow with a GPU (@tensorflow/tfjs-node-gpu), native TensorFlow on CPU
 * (@tensorflow/tfjs-node), wasm (with the kernels this project registers), then pure-JS cpu.
 * The native bindings are optional peer dependencies: they are loaded only when installed.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendUnavailableError } from './errors.js';
import { registerWasmKernels } from './kernels/register-wasm-kernels.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface BackendInfo {
  /** tfjs backend name actually in use. */
  name: 'tensorflow' | 'wasm' | 'cpu';
  /** What computes: 'gpu', 'cpu (native)', 'cpu (wasm, simd)', ... */
  device: string;
  /** npm package that provides it. */
  package: string;
}

export function isBackendChoice(name: string): name is BackendChoice {
  return (BACKEND_CHOICES as readonly string[]).includes(name);
}

let active: BackendInfo | undefined;

async function tryNative(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<BackendInfo> {
  try {
    await import(pkg);
  } catch (err) {
    throw new BackendUnavailableError('tensorflow', `${pkg} is not installed or failed to load (${(err as Error).message.split('\n')[0]})`, { cause: err });
  }
  if (!(await tf.setBackend('tensorflow'))) {
    throw new BackendUnavailableError('tensorflow', `${pkg} loaded but the 'tensorflow' backend failed to initialize`);
  }
  const gpu = pkg === '@tensorflow/tfjs-node-gpu';
  return { name: 'tensorflow', device: gpu ? 'gpu (CUDA)' : 'cpu (native)', package: pkg };
}

async function tryWasm(): Promise<BackendInfo> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
  } catch (err) {
    throw new BackendUnavailableError('wasm', `@tensorflow/tfjs-backend-wasm failed to load (${(err as Error).message})`, { cause: err });
  }
  registerWasmKernels();
  if (!(await tf.setBackend('wasm'))) throw new BackendUnavailableError('wasm', 'the wasm module failed to initialize');
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  return { name: 'wasm', device: `cpu (wasm${simd ? ', simd' : ''}, 1 thread)`, package: '@tensorflow/tfjs-backend-wasm' };
}

async function tryCpu(): Promise<BackendInfo> {
  if (!(await tf.setBackend('cpu'))) throw new BackendUnavailableError('cpu', 'the pure-JS backend failed to initialize');
  return { name: 'cpu', device: 'cpu (pure JS)', package: '@tensorflow/tfjs-backend-cpu' };
}

/**
 * Selects and initializes the backend. An explicit choice that cannot load throws
 * BackendUnavailableError (never a silent fallback); `auto` falls through the order above.
 */
export async function selectBackend(choice: BackendChoice): Promise<BackendInfo> {
  if (active && (choice === 'auto' || choice === active.name)) return active;
  let info: BackendInfo;
  switch (choice) {
    case 'tensorflow':
      info = await tryNative('@tensorflow/tfjs-node-gpu').catch(() => tryNative('@tensorflow/tfjs-node'));
      break;
    case 'wasm':
      info = await tryWasm();
      break;
    case 'cpu':
      info = await tryCpu();
      break;
    case 'auto': {
      const order = [() => tryNative('@tensorflow/tfjs-node-gpu'), () => tryNative('@tensorflow/tfjs-node'), tryWasm, tryCpu];
      let last: unknown;
      for (const attempt of order) {
        try {
          info = await attempt();
          break;
        } catch (err) {
          last = err;
        }
      }
      if (!info!) throw last;
      break;
    }
  }
  await tf.ready();
  active = info;
  return info;
}
