// The failed-authentication bucket per source: a burst, then throttled until a failure's
// worth has come back at the set rate; sources by IPv4 address or IPv6 /64; answers held
// only up to a bound per source, past which they are refused at once.
import { describe, expect, it } from 'vitest';
import { AuthThrottle } from '../../src/http/auth-throttle.js';

describe('AuthThrottle', () => {
  it('lets a burst of failures by, then throttles until one is earned back', () => {
    const t = new AuthThrottle({ burst: 3, perSecond: 2 });
    const at = 1_000_000;
    for (let i = 0; i < 3; i++) {
      expect(t.check('a', at)).toBeUndefined();
      t.failed('a', at);
    }
    expect(t.check('a', at)).toEqual({ retryAfterS: 1, holdMs: 500 });
    // Another source is not touched.
    expect(t.check('b', at)).toBeUndefined();
    // Half a second later one failure's worth is back (2 a second).
    expect(t.check('a', at + 499)).toBeDefined();
    expect(t.check('a', at + 500)).toBeUndefined();
    t.failed('a', at + 500);
    expect(t.check('a', at + 500)).toBeDefined();
    // It never banks more than the burst.
    expect(t.check('a', at + 60_000)).toBeUndefined();
    for (let i = 0; i < 3; i++) t.failed('a', at + 60_000);
    expect(t.check('a', at + 60_000)).toBeDefined();
  });

  it('holds at most so many answers per source, then refuses at once', () => {
    const t = new AuthThrottle({ burst: 1, perSecond: 1, maxHeld: 2 });
    t.failed('a', 0);
    const releases = [t.hold('a'), t.hold('a')];
    expect(t.check('a', 0)).toMatchObject({ holdMs: 0 });
    releases[0]!();
    releases[0]!();
    expect(t.check('a', 0)!.holdMs).toBeGreaterThan(0);
  });

  it('counts an IPv6 /64 as one source, and IPv4-mapped addresses as IPv4', () => {
    expect(AuthThrottle.sourceOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(AuthThrottle.sourceOf('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(AuthThrottle.sourceOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(AuthThrottle.sourceOf('::ffff:10.0.0.7')).toBe('10.0.0.7');
    expect(AuthThrottle.sourceOf('10.0.0.7')).toBe('10.0.0.7');
    expect(AuthThrottle.sourceOf(undefined)).toBe('?');
  });
});
