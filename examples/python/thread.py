"""thread.py: the blocking requests, on a pool of --workers threads (default 10).

Twin of examples/thread.rs: ThreadPoolExecutor(workers), every request
submitted, each outcome reported as it completes.

    python3 examples/python/thread.py --urls 10 --delay 1
"""

import sys
from concurrent import futures

import common


def fetch_title(target, timeout):
    return common.title_of(common.blocking_request(target, timeout))


def main():
    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument('--workers', type=common.workers_arg, default=10, metavar='N|cpu',
                        help="pool size (the original's 10), or cpu for cpu_count()")
    args = parser.parse_args()
    max_workers = args.workers
    stage = common.Stage('thread', args, max_workers)
    with futures.ThreadPoolExecutor(max_workers=max_workers) as executor:
        submitted = {executor.submit(fetch_title, target, args.timeout): target
                     for target in stage.targets}
        for f in futures.as_completed(submitted):
            try:
                outcome = f.result()
            except (OSError, ValueError) as e:
                outcome = e
            common.report(submitted[f].url, outcome)
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
