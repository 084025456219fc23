#!/usr/bin/python3
"""The Python pusher of `npm run bench -- push`: Debian's grpcio and protobuf, and stubs
protoc generated from the shipped proto/dmsc/fib/v1/fib.proto (bench/push.mjs generates
them into a temporary directory and passes it as --stubs). Nothing of dmsc's code.

It opens one Modify session and pushes --entries upserts in batches of --batch, keeping
as many batches in flight as the node's window allows: the request iterator (which
grpcio drains on its own thread) builds each batch when a slot is free; this thread reads
the results. The entries are bench/push-workload.mjs's: keep the two in step.

Prints one JSON line: the push's start and end on CLOCK_MONOTONIC in ns (the clock the
benchmark's other processes read), statuses, the time spent building messages, and the
process's CPU time.
"""
import argparse
import json
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--stubs', required=True, help='directory holding dmsc/fib/v1/fib_pb2*.py')
    parser.add_argument('--addr', required=True, help="host:port of the node's FIB programming listener")
    parser.add_argument('--key', required=True, help='controller key or admin token')
    parser.add_argument('--entries', type=int, required=True)
    parser.add_argument('--batch', type=int, default=1000)
    parser.add_argument('--groups', action='store_true',
                        help="send the 100 next-hop lists once a batch, as its groups, and each upsert's by its group's index")
    parser.add_argument('--prebuild', action='store_true',
                        help='build every batch before the clock starts (to tell message building from the rest)')
    args = parser.parse_args()

    sys.path.insert(0, args.stubs)
    import grpc
    from dmsc.fib.v1 import fib_pb2 as pb, fib_pb2_grpc

    # Entry i's next hops depend on i % 100 only: 100 next-hop groups, built once each, as
    # a controller that keeps its next-hop groups (gRIBI's model) would, and copied into
    # each entry by protobuf's C++ (`extend`). Building four NextHop messages for each
    # entry instead takes Python about 10 us an entry, which alone caps a pusher at about
    # 100k entries/s on this machine.
    groups = [[pb.NextHop(id=f'peer:gw{(g + 17 * k) % 100}', weight=50 + (g + 31 * k) % 100, priority=k >> 1) for k in range(4)]
              for g in range(100)]
    # With --groups, the protocol's own answer to that cost: each list once a batch
    # (Batch.groups), and an upsert names its list by index (Upsert.group).
    group_messages = [pb.NextHopGroup(next_hops=hops) for hops in groups]

    def build(seq, election, first, n):
        """Batch `seq`: upserts for entries first..first+n-1 (push-workload.mjs's entries)."""
        b = pb.Batch(seq=seq, election_id=election)
        add = b.ops.add
        if args.groups:
            b.groups.extend(group_messages)
            for i in range(first, first + n):
                up = add().upsert
                up.prefix = f'/capability/t{i % 1000}/n{i}'
                up.group = i % 100
        else:
            for i in range(first, first + n):
                up = add().upsert
                up.prefix = f'/capability/t{i % 1000}/n{i}'
                up.next_hops.extend(groups[i % 100])
        return pb.ModifyRequest(batch=b)

    election = pb.Uint128(high=0, low=1)
    batches = (args.entries + args.batch - 1) // args.batch
    slots = threading.Semaphore(0)  # released once `opened` gives the window
    state = {'window': 0, 'build_s': 0.0, 'start': None, 'error': None}
    stop = threading.Event()
    prebuilt = None
    if args.prebuild:
        t = time.monotonic()
        prebuilt = [build(b + 1, election, b * args.batch, min(args.batch, args.entries - b * args.batch)) for b in range(batches)]
        state['prebuild_s'] = time.monotonic() - t

    def requests():
        yield pb.ModifyRequest(open=pb.Open(election_id=election))
        for b in range(batches):
            slots.acquire()
            if stop.is_set():
                return
            t = time.monotonic()
            first = b * args.batch
            if prebuilt is not None:
                request, prebuilt[b] = prebuilt[b], None
            else:
                request = build(b + 1, election, first, min(args.batch, args.entries - first))
            state['build_s'] += time.monotonic() - t
            if state['start'] is None:
                state['start'] = time.monotonic_ns()
            yield request
        # Half-close only once every result is in: the node ends the call when we do.
        stop.wait()

    channel = grpc.insecure_channel(args.addr)
    stub = fib_pb2_grpc.FibProgrammingStub(channel)
    call = stub.Modify(requests(), metadata=[('authorization', f'Bearer {args.key}')])
    statuses = {}
    acked = 0
    end = None
    try:
        for response in call:
            kind = response.WhichOneof('response')
            if kind == 'opened':
                o = response.opened
                if not o.primary:
                    raise RuntimeError('the session is not primary')
                state['window'] = max(1, o.limits.window)
                for _ in range(state['window']):
                    slots.release()
            elif kind == 'result':
                r = response.result
                name = pb.Status.Name(r.status)
                statuses[name] = statuses.get(name, 0) + 1
                if r.status != pb.VISIBLE:
                    raise RuntimeError(f'batch {r.seq}: {name} {r.message} {list(r.errors)[:3]}')
                acked += 1
                if acked == batches:
                    end = time.monotonic_ns()
                    break
                slots.release()
    finally:
        stop.set()
        slots.release()
        call.cancel()
        channel.close()
    if end is None:
        raise RuntimeError(f'the node ended the stream after {acked} of {batches} results')
    cpu = time.process_time()
    start = state['start']
    print(json.dumps({'push': {
        'start': str(start), 'end': str(end), 'seconds': (end - start) / 1e9, 'statuses': statuses,
        'window': state['window'], 'buildSeconds': state['build_s'], 'cpuSeconds': cpu,
        **({'prebuildSeconds': state['prebuild_s']} if args.prebuild else {}),
    }}), flush=True)


if __name__ == '__main__':
    main()
