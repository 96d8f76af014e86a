"""The yield / yield from walkthrough: gen, proxy_gen and three callers.

The caller talks to gen() directly (main1), through the delegating
proxy_gen() with send (main2), and with a for loop that also sends (main3).
main3 never ends on its own, so --rounds N stops it after N rounds.
The Rust twin is examples/yield_to_from.rs; both print the same lines.
"""

import argparse


def positive(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n

m = 5  # how many values main2 sends
flag = "stop"  # the caller's signal that tells gen() to finish


def gen():  # 子生成器 (the sub-generator)
    print("start 子生成器")
    k = "k"
    while True:  # endless unless the caller sends flag
        print("子生成器--要返回的值:", k)
        t = yield k  # pause here; send()/next() resumes with t
        print("子生成器--接受到的值:", t)
        if t is flag:
            break
    print("end 子生成器")
    return "这就是result"  # becomes StopIteration("这就是result")


def proxy_gen():  # 委托生成器 (the delegating generator)
    result = yield from gen()  # a two-way channel between caller and gen()
    print("委托生成器result:", result)
    yield result


def main1():  # 调用方1: drives gen() without a delegator
    g = gen()
    print(g.send(None))
    print(g.send(1))
    print(next(g))
    try:
        print(g.send(flag))  # without a delegator we catch the end ourselves
    except StopIteration as e:
        print("StopIteration")
        print("子生成器return的值:", e.value)


def main2():  # 调用方2: sends through proxy_gen()
    g = proxy_gen()
    g.send(None)  # start it first: a non-None send would be a TypeError
    for k in range(m):
        print("调用方--要发送的值:", k)
        print("调用方--接受到的值:", g.send(k))
        print("--------------------")
    g.send(flag)  # tells the endless gen() to finish


def main3(rounds):  # 调用方3: a for loop that also sends (endless; stops after rounds)
    g = proxy_gen()
    g.send(None)
    done = 0
    for k in g:  # each round's next(g) is g.send(None)
        print("调用方--接受到的值:", k)
        print("调用方--要发送的值:", g.send("m"))
        print("调用方--接受到的值:", k)
        print("--------------------")
        done += 1
        if done == rounds:
            break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=3, help="rounds of main3's endless loop")
    args = parser.parse_args()
    print("*********************")
    main1()
    print("*********************")
    main2()
    print("*********************")
    main3(args.rounds)
    print("*********************")
