#!/usr/bin/python3
"""A FIB programming client written with nothing of dmsc's: Debian's grpcio and protobuf,
and stubs that protoc generated from the shipped proto/dmsc/fib/v1/fib.proto (the test
generates them into a temporary directory and passes it as --stubs). It runs one scenario
and prints, one JSON object a line, what it saw: sessions opened, results, primary
changes, gRPC errors, Get answers, with timings, for python.test.ts to assert on. It
decides nothing itself: a wrong answer is printed, not raised.

Scenarios:
  steps JSON   a list of steps run in order, over any number of Modify sessions:
               {"session": S, "open": {Open as proto JSON}, "key"?: K}
               {"session": S, "send": {ModifyRequest as proto JSON}, "wait"?: true}
                   (a batch, replace_begin or replace_end; its election id defaults to
                   the session's; with "wait" the step lasts until the result of its seq)
               {"session": S, "wait_primary": MS}   until a `primary` message, or timeout
               {"session": S, "close": true}       half-close, wait for the server to end
               {"get": {GetRequest as proto JSON}, "key"?: K, "sample"?: [prefix...]}
               {"sleep": MS}
  bulk         pushes --count generated upserts in batches of --batch over one session,
               keeping as many batches in flight as the node's window allows (with
               --groups, each batch's next-hop lists as its groups); then Get.
"""
import argparse
import json
import os
import queue
import sys
import threading
import time

import grpc
from google.protobuf import json_format

START = time.monotonic()


def now_ms():
    return round((time.monotonic() - START) * 1000, 1)


def emit(**fields):
    fields.setdefault('t', now_ms())
    sys.stdout.write(json.dumps(fields) + '\n')
    sys.stdout.flush()


def u128(m):
    # As a decimal string: JSON numbers lose precision past 2^53.
    return str((m.high << 64) | m.low)


def to_u128(pb, value):
    v = int(value)
    return pb.Uint128(high=v >> 64, low=v & ((1 << 64) - 1))


def next_hop_dict(h):
    return {'id': h.id, 'weight': h.weight if h.HasField('weight') else None, 'priority': h.priority,
            'tags': list(h.tags), 'endpoint': h.endpoint}


def rpc_error(e, **fields):
    code = e.code() if hasattr(e, 'code') else None
    emit(event='rpc_error', code=code.name if code else None, details=e.details() if hasattr(e, 'details') else str(e), **fields)


class ModifySession:
    """One Modify stream. Requests come from a generator fed by a queue; a reader thread
    puts every response (or the stream's end or error) in an inbox the steps read."""

    def __init__(self, name, pb, stub, key):
        self.name = name
        self.pb = pb
        self.election = None
        self.outbox = queue.Queue()
        self.inbox = queue.Queue()
        self.sent_at = {}
        self.ended = False
        self.call = stub.Modify(self._requests(), metadata=[('authorization', f'Bearer {key}')])
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self):
        while True:
            request = self.outbox.get()
            if request is None:
                return
            yield request

    def _read(self):
        try:
            for response in self.call:
                self.inbox.put(('message', response))
            self.inbox.put(('end', None))
        except grpc.RpcError as e:
            self.inbox.put(('error', e))

    def send(self, request):
        kind = request.WhichOneof('request')
        if kind == 'open':
            self.election = request.open.election_id
        elif kind in ('batch', 'replace_begin', 'replace_end'):
            body = getattr(request, kind)
            if not body.HasField('election_id') and self.election is not None:
                body.election_id.CopyFrom(self.election)
            self.sent_at[body.seq] = time.monotonic()
        self.outbox.put(request)

    def next(self, timeout):
        """The next thing that happened on the stream, printed; None on timeout."""
        try:
            kind, value = self.inbox.get(timeout=timeout)
        except queue.Empty:
            emit(event='timeout', session=self.name)
            return None
        if kind == 'end':
            self.ended = True
            emit(event='end', session=self.name)
        elif kind == 'error':
            self.ended = True
            rpc_error(value, session=self.name)
        else:
            self.report(value)
        return kind, value

    def report(self, response):
        kind = response.WhichOneof('response')
        if kind == 'opened':
            o = response.opened
            emit(event='opened', session=self.name, primary=o.primary, primary_election_id=u128(o.primary_election_id),
                 controller_id=o.controller_id, generation=o.generation, fib_generation=o.fib_generation,
                 limits={'max_ops_per_batch': o.limits.max_ops_per_batch, 'max_bytes_per_batch': o.limits.max_bytes_per_batch,
                         'window': o.limits.window})
        elif kind == 'result':
            r = response.result
            sent = self.sent_at.pop(r.seq, None)
            emit(event='result', session=self.name, seq=r.seq, status=self.pb.Status.Name(r.status), generation=r.generation,
                 fib_generation=r.fib_generation, message=r.message,
                 errors=[{'op_index': e.op_index, 'code': e.code, 'message': e.message} for e in r.errors],
                 rtt_ms=round((time.monotonic() - sent) * 1000, 1) if sent is not None else None)
        elif kind == 'primary':
            p = response.primary
            emit(event='primary', session=self.name, primary=p.primary, primary_election_id=u128(p.primary_election_id),
                 primary_controller_id=p.primary_controller_id)
        else:
            emit(event='unknown_response', session=self.name, kind=kind)

    def until(self, want, timeout):
        """Reads until `want(kind, value)` holds, the stream ends, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            got = self.next(max(left, 0))
            if got is None:
                return None
            if want(*got):
                return got
        return None

    def close(self, timeout):
        """Half-closes the request stream, then waits for the node to end the call; if it
        does not within `timeout` seconds, cancels it."""
        self.outbox.put(None)
        emit(event='half_closed', session=self.name)
        self.until(lambda kind, value: False, timeout)
        if not self.ended:
            self.call.cancel()
            emit(event='cancelled', session=self.name)
        emit(event='closed', session=self.name)


def result_of(seq):
    return lambda kind, value: kind == 'message' and value.WhichOneof('response') == 'result' and value.result.seq == seq


def is_opened(kind, value):
    return kind == 'message' and value.WhichOneof('response') == 'opened'


def get(pb, stub, key, request, sample=()):
    """One Get: counts entries and chunks, and prints the sampled entries in full."""
    started = time.monotonic()
    count, chunks, generations, last_end, found = 0, 0, set(), False, {}
    wanted = set(sample)
    try:
        for chunk in stub.Get(request, metadata=[('authorization', f'Bearer {key}')], timeout=120):
            chunks += 1
            generations.add(chunk.generation)
            last_end = chunk.end
            count += len(chunk.entries)
            for e in chunk.entries:
                if e.prefix in wanted:
                    found[e.prefix] = [next_hop_dict(h) for h in e.next_hops]
    except grpc.RpcError as e:
        rpc_error(e, call='get')
        return
    emit(event='get', count=count, chunks=chunks, generations=sorted(generations), last_end=last_end, sample=found,
         ms=round((time.monotonic() - started) * 1000, 1))


def run_steps(pb, stub_for, key, steps):
    sessions = {}
    for step in steps:
        name = step.get('session')
        if 'open' in step:
            s = sessions[name] = ModifySession(name, pb, stub_for(), step.get('key', key))
            s.send(pb.ModifyRequest(open=json_format.ParseDict(step['open'], pb.Open())))
            s.until(is_opened, 10)
        elif 'send' in step:
            s = sessions[name]
            request = json_format.ParseDict(step['send'], pb.ModifyRequest())
            s.send(request)
            if step.get('wait', True):
                s.until(result_of(getattr(request, request.WhichOneof('request')).seq), 30)
        elif 'wait_primary' in step:
            sessions[name].until(lambda kind, value: kind == 'message' and value.WhichOneof('response') == 'primary',
                                 step['wait_primary'] / 1000)
        elif step.get('close'):
            sessions[name].close(5)
        elif 'get' in step:
            get(pb, stub_for(), step.get('key', key), json_format.ParseDict(step['get'], pb.GetRequest()), step.get('sample', []))
        elif 'sleep' in step:
            time.sleep(step['sleep'] / 1000)
        else:
            raise ValueError(f'unknown step {step!r}')
    for s in sessions.values():
        if not s.ended:
            s.outbox.put(None)
            s.call.cancel()


def bulk_hops(pb, args, i):
    """Entry i's next hops. python.test.ts computes the same for the entries it samples:
    keep the two in step."""
    aics = args.aics.split(',') if args.aics else []
    hops = []
    if aics:
        hops.append(pb.NextHop(id=aics[i % len(aics)], weight=100, priority=0, tags=['bulk'] if i % 2 == 0 else []))
    hops.append(pb.NextHop(id=f'peer:gw-{i % 5}', weight=50, priority=1))
    for k in (i % 40, 40 + i % 40):
        hops.append(pb.NextHop(id=f'ext-{k}', weight=10 + i % 90, priority=2, endpoint=f'{args.ext_base}/{k}'))
    return hops


def bulk_batch(pb, args, seq, first, n):
    """Batch `seq`: upserts for entries first..first+n-1, with --groups each distinct list
    of next hops sent once, as a group of the batch, and named by the upserts."""
    batch = pb.Batch(seq=seq)
    index = {}
    for i in range(first, first + n):
        up = batch.ops.add().upsert
        up.prefix = f'{args.root}/{i // args.batch}/e{i}'
        hops = bulk_hops(pb, args, i)
        if not args.groups:
            up.next_hops.extend(hops)
            continue
        key = tuple(h.SerializeToString() for h in hops)
        if key not in index:
            index[key] = len(batch.groups)
            batch.groups.add().next_hops.extend(hops)
        up.group = index[key]
    return batch


def run_bulk(pb, stub_for, args):
    s = ModifySession('bulk', pb, stub_for(), args.key)
    s.send(pb.ModifyRequest(open=pb.Open(controller_id=args.controller, election_id=to_u128(pb, args.election),
                                         persistence=pb.Persistence.Value(args.persistence), lease_ms=args.lease_ms)))
    got = s.until(is_opened, 10)
    if got is None:
        return
    window = max(1, min(got[1].opened.limits.window or 1, args.max_window))
    batches = (args.count + args.batch - 1) // args.batch
    started = time.monotonic()
    sent = acked = 0
    statuses = {}
    while acked < batches and not s.ended:
        while sent < batches and sent - acked < window:
            first = sent * args.batch
            s.send(pb.ModifyRequest(batch=bulk_batch(pb, args, sent + 1, first, min(args.batch, args.count - first))))
            sent += 1
        got = s.until(lambda kind, value: kind == 'message' and value.WhichOneof('response') == 'result', 60)
        if got is None:
            break
        acked += 1
        status = pb.Status.Name(got[1].result.status)
        statuses[status] = statuses.get(status, 0) + 1
    emit(event='pushed', batches=acked, statuses=statuses, window=window, ms=round((time.monotonic() - started) * 1000, 1))
    if s.ended:
        return
    s.close(5)
    if args.get:
        get(pb, stub_for(), args.key, pb.GetRequest(), args.sample.split(',') if args.sample else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--stubs', required=True, help='directory holding dmsc/fib/v1/fib_pb2*.py')
    parser.add_argument('--addr', required=True, help='host:port of the node\'s FIB programming listener')
    parser.add_argument('--key', required=True, help='controller key or admin token')
    sub = parser.add_subparsers(dest='scenario', required=True)
    steps = sub.add_parser('steps')
    steps.add_argument('json')
    bulk = sub.add_parser('bulk')
    bulk.add_argument('--controller', default='')
    bulk.add_argument('--election', default='1')
    bulk.add_argument('--persistence', default='PRESERVE', choices=['PRESERVE', 'DELETE', 'LEASE'])
    bulk.add_argument('--lease-ms', type=int, default=0)
    bulk.add_argument('--root', required=True, help='entries are ROOT/<batch>/e<i>')
    bulk.add_argument('--count', type=int, required=True)
    bulk.add_argument('--batch', type=int, default=1000)
    bulk.add_argument('--aics', default='', help='comma-separated AICs registered at the node')
    bulk.add_argument('--ext-base', required=True, help='external next hop ext-K has endpoint EXT_BASE/K')
    bulk.add_argument('--max-window', type=int, default=16)
    bulk.add_argument('--groups', action='store_true', help='send each batch\'s distinct next-hop lists as its groups')
    bulk.add_argument('--get', action='store_true', help='then Get the controller\'s entries')
    bulk.add_argument('--sample', default='', help='comma-separated prefixes whose entries Get prints')
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    from dmsc.fib.v1 import fib_pb2 as pb, fib_pb2_grpc

    channels = []

    def stub_for():
        # A channel per session or call, as separate controller processes would have.
        channel = grpc.insecure_channel(args.addr)
        channels.append(channel)
        return fib_pb2_grpc.FibProgrammingStub(channel)

    if args.scenario == 'steps':
        run_steps(pb, stub_for, args.key, json.loads(args.json))
    else:
        run_bulk(pb, stub_for, args)
    emit(event='done')
    # Closing a channel can hang inside grpcio on a loaded machine (seen once in CI, after
    # every step had its answer): close them on a thread, give it two seconds, and leave
    # either way, as a controller process that exits would.
    closer = threading.Thread(target=lambda: [channel.close() for channel in channels], daemon=True)
    closer.start()
    closer.join(2)
    sys.stdout.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
