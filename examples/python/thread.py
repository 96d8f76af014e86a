"""thread.py: the blocking requests, on a pool of cpu_count threads.

Twin of examples/thread.rs: ThreadPoolExecutor(max_workers=cpu_count()),
every request submitted, the results collected in submission order.

    python3 examples/python/thread.py --urls 10 --delay 1
"""

import sys
from concurrent import futures

import common


def fetch_title(target, timeout):
    return common.title_of(common.blocking_request(target, timeout))


def main():
    args = common.make_parser(__doc__.splitlines()[0]).parse_args()
    max_workers = common.cpu_count()
    stage = common.Stage('thread', args, max_workers)
    with futures.ThreadPoolExecutor(max_workers=max_workers) as executor:
        results = [executor.submit(fetch_title, target, args.timeout) for target in stage.targets]
        # [f.result() for f in results]: in submission order.
        for target, f in zip(stage.targets, results):
            try:
                outcome = f.result()
            except (OSError, ValueError) as e:
                outcome = e
            common.report(target.url, outcome)
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
