/**
 * A minimal WebAssembly assembler: LEB128 encodings, the opcodes the project's SIMD kernels use,
 * a few loop shapes, and a module of i32-parameter functions over an imported `env.memory`.
 * The kernels themselves (their function bodies) are in simd.ts.
 */

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

export const I32 = 0x7f;
export const V128 = 0x7b;

export const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (n: number) => [0x41, ...sleb(n)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Eqz: [0x45],
  i32Shl: [0x74],
  i32ShrU: [0x76],
  f32: (x: number) => [0x43, ...new Uint8Array(Float32Array.of(x).buffer)],
  simd: (code: number) => [0xfd, ...uleb(code)],
};
export const v = {
  load: (offset = 0) => [...op.simd(0x00), 0x04, ...uleb(offset)],
  store: (offset = 0) => [...op.simd(0x0b), 0x04, ...uleb(offset)],
  /** v128.load32_splat: one float, in every lane. */
  load32Splat: (offset = 0) => [...op.simd(0x09), 0x02, ...uleb(offset)],
  f32x4Add: op.simd(0xe4),
  f32x4Mul: op.simd(0xe6),
  /** f32x4.relaxed_madd (relaxed SIMD): a * b + c, fused where the CPU has FMA. */
  f32x4RelaxedMadd: op.simd(0x105),
  shuffle: (lanes: number[]) => [...op.simd(0x0d), ...lanes],
  f32x4Splat: op.simd(0x13),
  f32x4Max: op.simd(0xe9),
  i32x4Splat: op.simd(0x11),
  i32x4Eq: op.simd(0x37),
  f32x4Gt: op.simd(0x44),
  f32x4Ne: op.simd(0x42),
  and: op.simd(0x4e),
  andNot: op.simd(0x4f),
  or: op.simd(0x50),
  bitselect: op.simd(0x52),
  f64x2PromoteLow: op.simd(0x5f),
  f64x2Add: op.simd(0xf0),
};

/** `local` = `value` in every float32 lane. */
export const splatF32 = (value: number, local: number): number[] => [...op.f32(value), ...v.f32x4Splat, ...op.set(local)];
/** `local` = the vectors of 4 lanes in the float count held by the local `count` (count / 4). */
export const vectorsOf = (count: number, local: number): number[] => [...op.get(count), ...op.i32(2), ...op.i32ShrU, ...op.set(local)];
/** `local` = `value` in every int32 lane. */
export const splatI32 = (value: number, local: number): number[] => [...op.i32(value), ...v.i32x4Splat, ...op.set(local)];

/**
 * acc + x * y, with acc, x, y the code that pushes each: one rounding (relaxed_madd, a fused
 * multiply-add) when `fused`, else a multiply and an add (two roundings).
 */
export function multiplyAdd(fused: boolean, acc: number[], x: number[], y: number[]): number[] {
  return fused ? [...x, ...y, ...acc, ...v.f32x4RelaxedMadd] : [...acc, ...x, ...y, ...v.f32x4Mul, ...v.f32x4Add];
}

/** `local = local + delta` (delta: a local index or a constant). */
export function bump(local: number, delta: { local: number } | { constant: number }): number[] {
  return [...op.get(local), ...('local' in delta ? op.get(delta.local) : op.i32(delta.constant)), ...op.i32Add, ...op.set(local)];
}

/** `do { body } while (--counter != 0)`; the counter must start above zero. */
export function countdown(counter: number, body: number[]): number[] {
  return [...op.loop, ...body, ...op.get(counter), ...op.i32(1), ...op.i32Sub, ...op.tee(counter), ...op.brIf(0), ...op.end];
}

/** `if (counter != 0) countdown(...)`. */
export function guardedCountdown(counter: number, body: number[]): number[] {
  return [...op.block, ...op.get(counter), ...op.i32Eqz, ...op.brIf(0), ...countdown(counter, body), ...op.end];
}

export interface FunctionDef {
  name: string;
  params: number;
  /** Extra locals, in order after the params: [count, type]. */
  locals: Array<[number, number]>;
  body: number[];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function str(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

/** A module importing env.memory and exporting `defs` (all i32 params, no results). */
export function assembleModule(defs: FunctionDef[]): Uint8Array {
  const types = defs.map((d) => [0x60, ...vec(Array.from({ length: d.params }, () => [I32])), 0x00]);
  const imports = [[...str('env'), ...str('memory'), 0x02, 0x00, 0x00]]; // memory, limits: min 0, no max
  const functions = defs.map((_, i) => uleb(i));
  const exports = defs.map((d, i) => [...str(d.name), 0x00, ...uleb(i)]);
  const code = defs.map((d) => {
    const fn = [...vec(d.locals.map(([n, t]) => [...uleb(n), t])), ...d.body, ...op.end];
    return [...uleb(fn.length), ...fn];
  });
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(functions)),
    ...section(7, vec(exports)),
    ...section(10, vec(code)),
  ]);
}
