// A controller that sends its batches and half-closes at once (what a generator of
// requests does in most gRPC libraries) still gets every result before the stream ends.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fibService } from '../../src/programming/proto.js';
import { cleanup, start, type Proc } from '../e2e/harness.js';

describe('Modify after the controller half-closes', () => {
  let node: Proc;
  beforeAll(async () => {
    node = await start('node');
  });
  afterAll(cleanup);

  it('answers every batch sent before the half-close, then ends the stream', async () => {
    const client = new (fibService())(node.fibApi!, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${node.token}`);
    const call = client.Modify(md);
    const got: any[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (m: any) => got.push(m));
      call.on('end', resolve);
      call.on('error', reject);
    });
    const eid = { high: '0', low: '3' };
    call.write({ open: { controllerId: 'hc', electionId: eid } });
    for (let seq = 1; seq <= 5; seq++) {
      call.write({ batch: { seq: String(seq), electionId: eid, ops: [{ upsert: { prefix: `/capability/hc/${seq}`, nextHops: [{ id: 'peer:gw' }] } }] } });
    }
    call.end();
    await ended;
    client.close();
    expect(got.map((m) => m.response)).toEqual(['opened', 'result', 'result', 'result', 'result', 'result']);
    expect(got.slice(1).map((m) => [m.result.seq, m.result.status])).toEqual([1, 2, 3, 4, 5].map((s) => [String(s), 'VISIBLE']));
  });
});
