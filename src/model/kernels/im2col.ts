/**
 * The two im2col layouts the wasm Conv2DBackpropFilter can feed to the stock
 * matmul. Plain loops over typed arrays (wasm-heap views in practice);
 * out-of-image taps are written as 0.
 * A patch's K = filterHeight * filterWidth * inChannels entries are ordered
 * like the filter, (fr, fc, ci), so products land in filter layout.
 */
import type * as tf from '@tensorflow/tfjs';

type Conv2DInfo = tf.backend_util.Conv2DInfo;

/**
 * Writes patches of images [b0, b1) transposed: `out` is row-major
 * [K, (b1-b0)*outH*outW], one row per filter tap.
 */
export function im2colTransposed(xv: Float32Array, out: Float32Array, info: Conv2DInfo, b0: number, b1: number): void {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: FH, filterWidth: FW } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const m = (b1 - b0) * OH * OW;
  let row = 0;
  for (let fr = 0; fr < FH; fr++) {
    for (let fc = 0; fc < FW; fc++) {
      // Output columns whose tap (c*sw - left + fc) falls inside [0, W).
      const cLo = Math.min(OW, Math.max(0, Math.ceil((left - fc) / sw)));
      const cHi = Math.max(cLo, Math.min(OW, Math.ceil((W + left - fc) / sw)));
      for (let ci = 0; ci < C; ci++, row++) {
        let o = row * m;
        for (let b = b0; b < b1; b++) {
          for (let r = 0; r < OH; r++) {
            const ih = r * sh - top + fr;
            if (ih < 0 || ih >= H) {
              out.fill(0, o, o + OW);
              o += OW;
              continue;
            }
            const rowBase = (b * H + ih) * W;
            let c = 0;
            for (; c < cLo; c++) out[o++] = 0;
            let src = (rowBase + c * sw - left + fc) * C + ci;
            const step = sw * C;
            for (; c < cHi; c++, src += step) out[o++] = xv[src];
            for (; c < OW; c++) out[o++] = 0;
          }
        }
      }
    }
  }
}

/**
 * im2colRows for a 3x3 single-channel filter whose windows all lie inside the image (unpadded,
 * e.g. the first conv layer of an MNIST CNN): nine unrolled copies per patch, about 3x faster.
 */
function im2colRows3x3Inside(xv: Float32Array, out: Float32Array, info: Conv2DInfo, b0: number, b1: number): void {
  const { inHeight: H, inWidth: W, outHeight: OH, outWidth: OW, strideHeight: sh, strideWidth: sw } = info;
  let q = 0;
  for (let b = b0; b < b1; b++) {
    for (let r = 0; r < OH; r++) {
      let p0 = (b * H + r * sh) * W;
      let p1 = p0 + W;
      let p2 = p1 + W;
      for (let c = 0; c < OW; c++, p0 += sw, p1 += sw, p2 += sw, q += 9) {
        out[q] = xv[p0]; out[q + 1] = xv[p0 + 1]; out[q + 2] = xv[p0 + 2];
        out[q + 3] = xv[p1]; out[q + 4] = xv[p1 + 1]; out[q + 5] = xv[p1 + 2];
        out[q + 6] = xv[p2]; out[q + 7] = xv[p2 + 1]; out[q + 8] = xv[p2 + 2];
      }
    }
  }
}

/** True when im2colRows takes its unrolled path (im2colRows3x3Inside): 3x3x1, unpadded windows. */
export function hasUnrolledIm2colRows(info: Conv2DInfo): boolean {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: FH, filterWidth: FW } = info;
  const allInside = info.padInfo.top === 0 && info.padInfo.left === 0 && (OH - 1) * sh + FH <= H && (OW - 1) * sw + FW <= W;
  return allInside && C === 1 && FH === 3 && FW === 3 && info.dilationHeight === 1 && info.dilationWidth === 1;
}

/**
 * For the unrolled case (hasUnrolledIm2colRows) on the wasm heap: calls `row` for every output
 * row with the heap offsets of the three input rows its windows cover and its index among all
 * output rows (image-major).
 */
export function forEachWindowRow(info: Conv2DInfo, x0: number, row: (top: number, middle: number, bottom: number, outRow: number) => void): void {
  const { batchSize: B, inHeight: H, inWidth: W, outHeight: OH, strideHeight: sh } = info;
  const rowBytes = W * 4;
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < OH; r++) {
      const top = x0 + (b * H + r * sh) * rowBytes;
      row(top, top + rowBytes, top + 2 * rowBytes, b * OH + r);
    }
  }
}

/** Writes patches of images [b0, b1) as rows: `out` is row-major [(b1-b0)*outH*outW, K]. */
export function im2colRows(xv: Float32Array, out: Float32Array, info: Conv2DInfo, b0: number, b1: number): void {
  if (hasUnrolledIm2colRows(info)) {
    im2colRows3x3Inside(xv, out, info, b0, b1);
    return;
  }
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: FH, filterWidth: FW } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const tapRow = FW * C;
  let q = 0;
  for (let b = b0; b < b1; b++) {
    for (let r = 0; r < OH; r++) {
      for (let c = 0; c < OW; c++) {
        const iw0 = c * sw - left;
        // A window row fully inside the image is FW*C contiguous input values.
        const inside = iw0 >= 0 && iw0 + FW <= W;
        for (let fr = 0; fr < FH; fr++) {
          const ih = r * sh - top + fr;
          if (ih < 0 || ih >= H) {
            out.fill(0, q, q + tapRow);
            q += tapRow;
            continue;
          }
          const rowBase = (b * H + ih) * W;
          if (inside) {
            let src = (rowBase + iw0) * C;
            for (let t = 0; t < tapRow; t++) out[q++] = xv[src++];
            continue;
          }
          for (let fc = 0; fc < FW; fc++) {
            const iw = iw0 + fc;
            if (iw < 0 || iw >= W) {
              for (let ci = 0; ci < C; ci++) out[q++] = 0;
              continue;
            }
            let src = (rowBase + iw) * C;
            for (let ci = 0; ci < C; ci++) out[q++] = xv[src++];
          }
        }
      }
    }
  }
}
