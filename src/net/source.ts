// Who a connection comes from, for limits kept per source: an IPv4 address as it is, an
// IPv6 address by its /64 (one host is commonly given a whole /64, so counting single
// addresses would let it take as many slots as it likes).
import { isIPv6 } from 'node:net';

export function sourceOf(address: string | undefined): string {
  if (!address) return '?';
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (!isIPv6(v4)) return v4;
  const full = v4.includes('::') ? expand(v4) : v4.split(':');
  return `${full.slice(0, 4).join(':')}::/64`;
}

function expand(address: string): string[] {
  const [head, tail] = address.split('::') as [string, string];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  return [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
}
