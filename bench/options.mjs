// Command-line options of one benchmark: parsed with node:util, --help prints the usage,
// and `int` reads a whole number in range; bad input exits 2 with the usage.
import { parseArgs } from 'node:util';

export function benchOptions(name, usage, options) {
  let opts;
  try {
    opts = parseArgs({
      options: { ...options, 'no-write': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
      allowPositionals: true,
    }).values;
  } catch (e) {
    console.error(`dmsc bench ${name}: ${e.message}\n${usage}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(usage);
    process.exit(0);
  }
  const int = (key, min, max) => {
    const v = Number(opts[key]);
    if (!Number.isInteger(v) || v < min || v > max) {
      console.error(`dmsc bench ${name}: --${key} must be an integer from ${min} to ${max}`);
      process.exit(2);
    }
    return v;
  };
  return { opts, int };
}
