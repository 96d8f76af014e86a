# Fixture in the shape of yuchaoshui/notes Python异步并发/async_await.py,
# written for pyfiber's tests (not a copy): it needs aiohttp, as the
# original does.
import asyncio
import re

import aiohttp


urls = [f'http://www.baidu.com/s?wd={i}' for i in range(10)]
results = []


def parse(url, response):
    text = response.decode('utf8', errors='ignore')
    found = re.search(r'<title>(.*)</title>', text)
    results.append((url, found.group(1) if found else ''))


async def fetch(session, url):
    async with session.get(url) as response:
        parse(url, await response.read())


async def main():
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(fetch(session, url) for url in urls))


if __name__ == '__main__':
    asyncio.run(main())
    print(results)
