// The protobuf wire format of `ModifyRequest`, written by hand for the one message that
// carries bulk loads: the generic codec (protobufjs through proto-loader) spends 6-8 µs
// an entry turning a batch into objects and back, more than the table takes to apply it.
// This one reads and writes the same bytes as any protobuf library (proto3 rules: unknown
// fields skipped, the last of a oneof wins, missing fields at their defaults) into the
// same objects proto-loader gives with LOADER_OPTIONS, so the rest of the code cannot
// tell them apart; a property test holds the two codecs to each other.

const PERSISTENCE = ['PRESERVE', 'DELETE', 'LEASE'];
const HEALTH = ['UP', 'DEGRADED', 'DOWN'];
const MAX_DEPTH_BYTES = 1 << 30;

export class Reader {
  pos: number;
  /** The end of the message being read: no field of it may run past. */
  end: number;
  constructor(readonly buf: Buffer, start = 0, end = buf.length) {
    this.pos = start;
    this.end = end;
  }

  varint(): number {
    // Up to 2^53 exactly; larger values only where a string is asked for (varint64).
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new Error('varint longer than 10 bytes');
  }

  /**
   * A uint32 field: the varint's low 32 bits, as protobuf's own readers take them (a
   * negative int32 comes as ten bytes, 2^64 - 1 for -1). varint() would round a value
   * past 2^53 and lose them.
   */
  uint32(): number {
    let result = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 5) result |= (b & 0x7f) << (7 * i);
      if (b < 0x80) return result >>> 0;
    }
    throw new Error('varint longer than 10 bytes');
  }

  varint64(): string {
    const start = this.pos;
    const n = this.varint();
    if (n <= Number.MAX_SAFE_INTEGER) return String(n);
    let v = 0n;
    let shift = 0n;
    for (let p = start; p < this.pos; p++) {
      v |= BigInt(this.buf[p]! & 0x7f) << shift;
      shift += 7n;
    }
    return (v & 0xffffffffffffffffn).toString();
  }

  /** Enters a nested message; returns the enclosing end, for `leave`. */
  enter(): number {
    const inner = this.bytesEnd();
    const outer = this.end;
    this.end = inner;
    return outer;
  }

  leave(outer: number): void {
    if (this.pos !== this.end) throw new Error('a nested message ends inside a field');
    this.end = outer;
  }

  bytesEnd(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (len > MAX_DEPTH_BYTES || end > this.end) throw new Error('length-delimited field runs past its message');
    return end;
  }

  string(): string {
    const end = this.bytesEnd();
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end;
    return s;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new Error('truncated double');
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0: this.varint(); return;
      case 1: this.pos += 8; break;
      case 2: this.pos = this.bytesEnd(); return;
      case 5: this.pos += 4; break;
      default: throw new Error(`wire type ${wire} is not proto3`);
    }
    if (this.pos > this.end) throw new Error('truncated field');
  }
}

// Each message reader takes the reader positioned at the message, its end set to the
// message's: a length inside can never reach past it.
type Msg = Record<string, unknown>;

export function uint128(r: Reader): { high: string; low: string } {
  const out = { high: '0', low: '0' };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) out.high = r.varint64();
    else if (tag === 16) out.low = r.varint64();
    else r.skip(tag & 7);
  }
  return out;
}

function nextHop(r: Reader): Msg {
  const h: Msg = { tags: [] as string[], id: '', priority: 0, endpoint: '' };
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case 10: h['id'] = r.string(); break;
      case 16:
        h['weight'] = r.uint32();
        h['_weight'] = 'weight';
        break;
      case 24: h['priority'] = r.uint32(); break;
      case 34: (h['tags'] as string[]).push(r.string()); break;
      case 42: h['endpoint'] = r.string(); break;
      default: r.skip(tag & 7);
    }
  }
  return h;
}

function prefixOnly(r: Reader): Msg {
  const m: Msg = { prefix: '' };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) m['prefix'] = r.string();
    else r.skip(tag & 7);
  }
  return m;
}

function upsert(r: Reader): Msg {
  const hops: Msg[] = [];
  const m: Msg = { nextHops: hops, prefix: '' };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) m['prefix'] = r.string();
    else if (tag === 18) {
      const outer = r.enter();
      hops.push(nextHop(r));
      r.leave(outer);
    } else if (tag === 24) {
      m['group'] = r.uint32();
      m['_group'] = 'group';
    } else r.skip(tag & 7);
  }
  return m;
}

function group(r: Reader): Msg {
  const hops: Msg[] = [];
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) {
      const outer = r.enter();
      hops.push(nextHop(r));
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  return { nextHops: hops };
}

function health(r: Reader): Msg {
  const m: Msg = { nextHopId: '', state: 'UP', load: 0 };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) m['nextHopId'] = r.string();
    else if (tag === 16) {
      const v = r.varint();
      m['state'] = HEALTH[v] ?? v;
    } else if (tag === 25) m['load'] = r.double();
    else r.skip(tag & 7);
  }
  return m;
}

function op(r: Reader): Msg {
  const m: Msg = {};
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if ((tag & 7) === 2 && field >= 1 && field <= 3) {
      const outer = r.enter();
      const kind = field === 1 ? 'upsert' : field === 2 ? 'remove' : 'health';
      // A oneof keeps the last member set.
      delete m['upsert'];
      delete m['remove'];
      delete m['health'];
      m[kind] = field === 1 ? upsert(r) : field === 2 ? prefixOnly(r) : health(r);
      m['op'] = kind;
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  return m;
}

// Batch, ReplaceBegin and ReplaceEnd share seq (1), election_id (2), expect_generation (3).
function batchLike(r: Reader, withOps: boolean): Msg {
  const ops: Msg[] = [];
  const groups: Msg[] = [];
  const m: Msg = withOps ? { ops, groups, seq: '0', electionId: null } : { seq: '0', electionId: null };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) m['seq'] = r.varint64();
    else if (tag === 18) {
      const outer = r.enter();
      m['electionId'] = uint128(r);
      r.leave(outer);
    } else if (tag === 24) {
      m['expectGeneration'] = r.varint64();
      m['_expectGeneration'] = 'expectGeneration';
    } else if (tag === 34 && withOps) {
      const outer = r.enter();
      ops.push(op(r));
      r.leave(outer);
    } else if (tag === 42 && withOps) {
      const outer = r.enter();
      groups.push(group(r));
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  return m;
}

function open(r: Reader): Msg {
  const m: Msg = { controllerId: '', electionId: null, persistence: 'PRESERVE', leaseMs: '0' };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) m['controllerId'] = r.string();
    else if (tag === 18) {
      const outer = r.enter();
      m['electionId'] = uint128(r);
      r.leave(outer);
    } else if (tag === 24) {
      const v = r.varint();
      m['persistence'] = PERSISTENCE[v] ?? v;
    } else if (tag === 32) m['leaseMs'] = r.varint64();
    else r.skip(tag & 7);
  }
  return m;
}

const KINDS = ['', 'open', 'batch', 'replaceBegin', 'replaceEnd'] as const;

/** Decodes a ModifyRequest; throws on bytes that are not one. */
export function decodeModifyRequest(buf: Buffer): Msg {
  const r = new Reader(buf);
  const m: Msg = {};
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if ((tag & 7) === 2 && field >= 1 && field <= 4) {
      const outer = r.enter();
      for (const k of KINDS) if (k) delete m[k];
      const kind = KINDS[field]!;
      m[kind] = field === 1 ? open(r) : batchLike(r, field === 2);
      m['request'] = kind;
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  return m;
}

// --- writing ---

export class Writer {
  buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  varint64(v: unknown): void {
    const b = typeof v === 'bigint' ? v : BigInt(String(v ?? 0));
    if (b <= BigInt(Number.MAX_SAFE_INTEGER)) return this.varint(Number(b));
    let x = b & 0xffffffffffffffffn;
    this.ensure(10);
    while (x >= 0x80n) {
      this.buf[this.pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }

  string(field: number, s: string): void {
    const n = Buffer.byteLength(s);
    this.varint((field << 3) | 2);
    this.varint(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos);
  }

  // A nested message: its length is written once the body is, moving the body if needed.
  nested(field: number, body: () => void): void {
    const lenAt = this.begin(field);
    body();
    this.end(lenAt);
  }

  /** Starts a nested message (`end` finishes it): `nested` without a closure, for hot paths. */
  begin(field: number): number {
    this.varint((field << 3) | 2);
    const lenAt = this.pos;
    this.ensure(1);
    this.pos += 1; // room for a one-byte length, the common case
    return lenAt;
  }

  end(lenAt: number): void {
    const start = lenAt + 1;
    const len = this.pos - start;
    if (len < 0x80) {
      this.buf[lenAt] = len;
      return;
    }
    let bytes = 0;
    for (let v = len; v >= 0x80; v = Math.floor(v / 128)) bytes++;
    this.ensure(bytes);
    this.buf.copy(this.buf, start + bytes, start, this.pos);
    this.pos = lenAt;
    this.varint(len);
    this.pos = start + bytes + len;
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

type Any = Record<string, any>;

function writeUint128(w: Writer, field: number, v: Any | null | undefined): void {
  if (!v) return;
  w.nested(field, () => {
    if (v['high'] !== undefined && String(v['high']) !== '0') {
      w.varint(8);
      w.varint64(v['high']);
    }
    if (v['low'] !== undefined && String(v['low']) !== '0') {
      w.varint(16);
      w.varint64(v['low']);
    }
  });
}

function writeHop(w: Writer, h: Any): void {
  if (h['id']) w.string(1, h['id']);
  if (h['weight'] !== undefined && h['weight'] !== null) {
    w.varint(16);
    w.varint(h['weight']);
  }
  if (h['priority']) {
    w.varint(24);
    w.varint(h['priority']);
  }
  for (const t of h['tags'] ?? []) w.string(4, t);
  if (h['endpoint']) w.string(5, h['endpoint']);
}

export function writeOp(w: Writer, o: Any): void {
  if (o['upsert']) {
    const u = o['upsert'];
    w.nested(1, () => {
      if (u['prefix']) w.string(1, u['prefix']);
      for (const h of u['nextHops'] ?? []) w.nested(2, () => writeHop(w, h));
      if (u['group'] !== undefined && u['group'] !== null) {
        w.varint(24);
        w.varint(u['group']);
      }
    });
  } else if (o['remove']) {
    w.nested(2, () => o['remove']['prefix'] && w.string(1, o['remove']['prefix']));
  } else if (o['health']) {
    const h = o['health'];
    w.nested(3, () => {
      if (h['nextHopId']) w.string(1, h['nextHopId']);
      const state = typeof h['state'] === 'number' ? h['state'] : HEALTH.indexOf(h['state'] ?? 'UP');
      if (state > 0) {
        w.varint(16);
        w.varint(state);
      }
      if (h['load']) {
        w.varint(25);
        w.ensure(8);
        w.buf.writeDoubleLE(h['load'], w.pos);
        w.pos += 8;
      }
    });
  }
}

function writeBatchLike(w: Writer, b: Any, withOps: boolean): void {
  if (b['seq'] !== undefined && String(b['seq']) !== '0') {
    w.varint(8);
    w.varint64(b['seq']);
  }
  writeUint128(w, 2, b['electionId']);
  if (b['expectGeneration'] !== undefined && b['expectGeneration'] !== null) {
    w.varint(24);
    w.varint64(b['expectGeneration']);
  }
  // Ops come as objects, or already encoded as Batch field 4 entries (FibClient's).
  if (withOps && b['opsBytes']) w.raw(b['opsBytes']);
  else if (withOps) for (const o of b['ops'] ?? []) w.nested(4, () => writeOp(w, o));
  if (withOps) for (const g of b['groups'] ?? []) w.nested(5, () => {
    for (const h of g['nextHops'] ?? []) w.nested(1, () => writeHop(w, h));
  });
}

/** Encodes a ModifyRequest given as proto-loader objects (numbers, strings or bigints for 64-bit fields). */
export function encodeModifyRequest(m: Any): Buffer {
  const w = new Writer(m['batch'] ? 256 + (m['batch']['opsBytes']?.length ?? 64 * (m['batch']['ops']?.length ?? 0)) : 128);
  if (m['open']) {
    const o = m['open'];
    w.nested(1, () => {
      if (o['controllerId']) w.string(1, o['controllerId']);
      writeUint128(w, 2, o['electionId']);
      const p = typeof o['persistence'] === 'number' ? o['persistence'] : PERSISTENCE.indexOf(o['persistence'] ?? 'PRESERVE');
      if (p > 0) {
        w.varint(24);
        w.varint(p);
      }
      if (o['leaseMs'] !== undefined && String(o['leaseMs']) !== '0') {
        w.varint(32);
        w.varint64(o['leaseMs']);
      }
    });
  } else if (m['batch']) w.nested(2, () => writeBatchLike(w, m['batch'], true));
  else if (m['replaceBegin']) w.nested(3, () => writeBatchLike(w, m['replaceBegin'], false));
  else if (m['replaceEnd']) w.nested(4, () => writeBatchLike(w, m['replaceEnd'], false));
  return w.done();
}
