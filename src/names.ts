// Capability names: the one grammar every surface checks (registration, the FIB and its
// files, discovery and resolution, digests from peers, policy patterns, the data plane),
// and the one way a name is written in a URL. The native core (native/core/name.cpp)
// implements the same grammar for what it parses itself; a differential property test
// holds the two together.
//
// A name is `/`-separated components after a leading `/` (or `/` alone, the root): at
// most 32 components and 1024 bytes of UTF-8, compared byte for byte. A component is
// never empty, `.` or `..`, and holds no control character (C0, DEL, C1), no white
// space, no bidirectional control, no invisible character (U+200B, U+2060, U+180E,
// U+FEFF) and no backslash: each of those is a name a person cannot read as it is, or a
// path an instance could read as something else.
//
// In a URL (the data plane's request path, and the `x-dmsc-capability` header) a name is
// written in its URI form: each component percent-encoded (RFC 3986), every byte outside
// RFC 3986's `pchar` as %XX, `%` itself as %25. A path is decoded once, component by
// component; a %2F that would put a `/` inside a component is refused, as is anything
// the grammar refuses once decoded.
import { DmscTypeError } from './errors.js';

export const MAX_NAME_BYTES = 1024;
export const MAX_COMPONENTS = 32;

// 1 to 32 components of printable ASCII other than '/' and '\', none of them '.' or '..':
// the common case, checked by one compiled regular expression; anything else takes the
// careful path below, which names the problem and where it is.
const SIMPLE_NAME = /^(?:\/(?!\.\.?(?:\/|$))[\x21-\x2e\x30-\x5b\x5d-\x7e]+){1,32}$/;

/** Why a code point may not stand in a name, or null. */
function refused(cp: number): string | null {
  if (cp <= 0x1f || cp === 0x7f || (cp >= 0x80 && cp <= 0x9f)) return 'a control character';
  if (cp === 0x20 || cp === 0xa0 || cp === 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp === 0x2028 || cp === 0x2029 || cp === 0x202f || cp === 0x205f || cp === 0x3000) return 'white space';
  if (cp === 0x61c || cp === 0x200e || cp === 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) return 'a bidirectional control';
  if (cp === 0x200b || cp === 0x2060 || cp === 0x180e || cp === 0xfeff) return 'an invisible character';
  if (cp === 0x5c) return 'a backslash';
  if (cp >= 0xd800 && cp <= 0xdfff) return 'a lone surrogate (not valid UTF-8)';
  return null;
}

const hex = (cp: number) => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * A name, then each shorter prefix at a component boundary, then '/': the order in which
 * a longest-prefix match tries them (`/a/b/c`, `/a/b`, `/a`, `/`).
 */
export function* prefixesOf(name: string): Generator<string, void, undefined> {
  for (let prefix = name; ; ) {
    yield prefix;
    if (prefix === '/') return;
    const cut = prefix.lastIndexOf('/');
    prefix = cut <= 0 ? '/' : prefix.slice(0, cut);
  }
}

/** Why a string is not a capability name (naming the place), or null when it is one. */
export function nameProblem(name: string): string | null {
  const n = name.length;
  if (n <= MAX_NAME_BYTES && SIMPLE_NAME.test(name)) return null;
  if (n === 0) return 'name is empty';
  if (name.charCodeAt(0) !== 0x2f) return "name must start with '/'";
  if (n === 1) return null;
  // UTF-8 takes at least a byte per UTF-16 code unit.
  if (n > MAX_NAME_BYTES) return 'name is longer than 1024 bytes';
  let components = 1;
  let start = 1;
  let position = 1;
  let ascii = true;
  const component = (end: number): string | null => {
    const c = name.slice(start, end);
    if (c === '') return `name has an empty component ('//') at character ${position}`;
    if (c === '.' || c === '..') return `name has a '${c}' component (component ${components})`;
    return null;
  };
  for (let i = 1; i < n; i++, position++) {
    const cp = name.codePointAt(i)!;
    if (cp > 0xffff) i++;
    if (cp === 0x2f) {
      const p = component(i);
      if (p) return p;
      components++;
      start = i + 1;
      continue;
    }
    if (cp > 0x7f) ascii = false;
    const why = refused(cp);
    if (why) return `name has ${why} (${hex(cp)}) at character ${position + 1}`;
  }
  if (start === n) return "name must not end with '/'";
  const last = component(n);
  if (last) return last;
  if (components > MAX_COMPONENTS) return 'name has more than 32 components';
  if (!ascii && Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return 'name is longer than 1024 bytes';
  return null;
}

/** `name` as a string fit for a message or a log line: quoted, with anything unprintable escaped. */
export function quoteName(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name).replace(/[\u007f-\u009f\u00a0\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** `name` if it is a capability name; else ERR_DMSC_INVALID_NAME saying what is wrong and where. */
export function checkName(name: unknown, what = 'name'): string {
  if (typeof name !== 'string') {
    throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `${what} must be a string, got ${name === null ? 'null' : Array.isArray(name) ? 'an array' : typeof name}`);
  }
  const problem = nameProblem(name);
  if (problem !== null) throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `invalid ${what} ${quoteName(name)}: ${problem}`);
  return name;
}

// RFC 3986 pchar less '%': unreserved, sub-delims, ':' and '@'. Everything else is encoded.
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$/;

/** The URI form of a name: each component percent-encoded where RFC 3986 asks it. */
export function namePath(name: string): string {
  if (PCHAR.test(name.replaceAll('/', ''))) return name;
  return name.split('/').map((c) => {
    let out = '';
    for (const byte of Buffer.from(c, 'utf8')) {
      const ch = String.fromCharCode(byte);
      out += byte < 0x80 && PCHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
    return out;
  }).join('/');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The name a URL path stands for (its query taken off), the path as it came off the wire
 * (each character one byte, as Node reads a request line): decoded once, component by
 * component, as UTF-8, then held to the grammar. Returns the name, or why the path names
 * none.
 */
export function nameFromPath(path: string): { name: string } | { problem: string } {
  let name = path;
  if (/[%\u0080-\uffff]/.test(path)) {
    const parts = path.split('/');
    for (const [k, part] of parts.entries()) {
      if (!/[%\u0080-\uffff]/.test(part)) continue;
      const bytes = new Uint8Array(part.length);
      let n = 0;
      for (let i = 0; i < part.length; i++) {
        const c = part.charCodeAt(i);
        if (c > 0xff) return { problem: `component ${k} is not URL text` };
        if (c !== 0x25) {
          bytes[n++] = c;
          continue;
        }
        const pair = part.slice(i + 1, i + 3);
        if (!/^[0-9A-Fa-f]{2}$/.test(pair)) return { problem: `'%' not followed by two hex digits in component ${k}` };
        const byte = parseInt(pair, 16);
        if (byte === 0x2f) return { problem: `an encoded '/' (%2F) in component ${k}` };
        bytes[n++] = byte;
        i += 2;
      }
      try {
        parts[k] = utf8.decode(bytes.subarray(0, n));
      } catch {
        return { problem: `component ${k} is not UTF-8 once decoded` };
      }
    }
    name = parts.join('/');
  }
  const problem = nameProblem(name);
  return problem === null ? { name } : { problem };
}

/**
 * What of a URL path lies below the name prefix that matched it (in the path's own
 * encoding, as it is sent on): the rest of its components, and a trailing '/'. Below
 * the root `/` that is the whole path.
 */
export function pathBelow(path: string, prefix: string): string {
  if (prefix === '/') return path === '/' ? '' : path;
  let depth = 0;
  for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) === 0x2f) depth++;
  let at = 0;
  for (let seen = 0; seen <= depth && at >= 0; seen++) at = path.indexOf('/', at + (seen ? 1 : 0));
  return at < 0 ? '' : path.slice(at);
}
