import { describe, expect, it } from 'vitest';
import { formatNbdUri, parseNbdUri } from './uri.js';

describe('parseNbdUri', () => {
  it.each([
    ['nbd+unix:///vda?socket=/run/x/nbd.sock', { socketPath: '/run/x/nbd.sock', exportName: 'vda' }],
    ['nbd+unix:///?socket=/tmp/a.sock', { socketPath: '/tmp/a.sock', exportName: '' }],
    ['nbd://example.com:10810/disk', { host: 'example.com', port: 10810, exportName: 'disk' }],
    ['nbd://example.com', { host: 'example.com', port: 10809, exportName: '' }],
    ['nbd://example.com//disk', { host: 'example.com', port: 10809, exportName: '/disk' }],
    ['nbd://example.com/hello%20world', { host: 'example.com', port: 10809, exportName: 'hello world' }],
    ['nbd://[::1]:5000/x', { host: '::1', port: 5000, exportName: 'x' }],
  ])('%s', (uri, target) => {
    expect(parseNbdUri(uri)).toEqual(target);
  });

  it.each([
    ['nbds://host/x', /requires TLS/],
    ['nbd+unix:///x', /needs a '\?socket=PATH'/],
    ['nbd+unix://host/x?socket=/s', /must not have a host/],
    ['http://host/x', /unknown scheme 'http'/],
    ['nbd://host/x?socket=/s', /only valid with nbd\+unix/],
    ['nbd://host/x?tls-type=x509', /asks for TLS/],
    ['nbd://host/x?bogus=1', /unknown query parameter 'bogus'/],
    ['not a uri', /not a URI/],
  ])('refuses %s', (uri, why) => {
    expect(() => parseNbdUri(uri)).toThrow(why);
  });

  it('round-trips through formatNbdUri', () => {
    for (const t of [
      { socketPath: '/tmp/with space/x.sock', exportName: 'a b/c' },
      { socketPath: '/tmp/q?x&y=1#z.sock', exportName: '/disk' },
      { host: '::1', port: 123, exportName: 'vda' },
    ]) {
      expect(parseNbdUri(formatNbdUri(t))).toEqual(t);
    }
  });
});
