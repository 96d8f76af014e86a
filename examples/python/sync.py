"""sync.py: fetch the URLs one after another with blocking sockets.

Twin of examples/sync.rs: blocking_request() (in common.py, shared with
process.py and thread.py) waits for each whole answer before the next
request starts, so N URLs take at least N x delay.

    python3 examples/python/sync.py --urls 10 --delay 1
"""

import sys

import common


def main():
    args = common.make_parser(__doc__.splitlines()[0]).parse_args()
    stage = common.Stage('sync', args, 1)
    for target in stage.targets:
        try:
            response = common.blocking_request(target, args.timeout)
        except OSError as e:
            response = e
        common.report_response(target.url, response)
    return stage.finish()


if __name__ == '__main__':
    sys.exit(main())
