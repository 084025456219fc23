// Latency distributions: samples in ns are recorded after the timed loop (so recording
// does not sit between two timed calls' caches and branch predictors more than a store),
// then summarised with HdrHistogram (3 significant digits) and turned into CDF points.
import * as hdr from 'hdr-histogram-js';

/** A pure-JS 64-bit HdrHistogram of the first `n` values (ns) of `samples`. */
export function histogramOf(samples, n = samples.length) {
  const h = hdr.build({ bitBucketSize: 64, lowestDiscernibleValue: 1, highestTrackableValue: 2 ** 40, numberOfSignificantValueDigits: 3, autoResize: true, useWebAssembly: false });
  for (let i = 0; i < n; i++) h.recordValue(Math.max(1, Math.round(samples[i])));
  return h;
}

/**
 * The figures the report prints and stores, in ns, and the whole histogram in HdrHistogram's
 * compressed base64 form, which any HdrHistogram implementation (and its plotters) decodes.
 */
export function summarize(h) {
  return {
    count: h.totalCount,
    min: h.minNonZeroValue,
    p50: h.getValueAtPercentile(50),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
    mean: +h.mean.toFixed(1),
    histogram: hdr.encodeIntoCompressedBase64(h),
  };
}

/**
 * Points [ns, y] of the CDF with y = log10(1 / (1 - p)): 0 at the minimum, 1 at p90, 2 at
 * p99, 3 at p99.9, so the tail gets as much room as the body. The last point is the max,
 * at the y of the last sample (1 - 1/count).
 */
export function cdfPoints(h) {
  const top = Math.log10(Math.max(2, h.totalCount));
  const pts = [];
  for (let y = 0; y < top; y += 0.02) {
    pts.push([h.getValueAtPercentile(100 * (1 - 10 ** -y)), y]);
  }
  pts.push([h.maxValue, top]);
  return pts;
}

/** Times `n` empty regions: the cost of the two hrtime.bigint() reads every figure includes. */
export function timerOverhead(n) {
  const s = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const t1 = process.hrtime.bigint();
    s[i] = Number(t1 - t0);
  }
  return s;
}
