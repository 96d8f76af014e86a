# Fixture in the shape of denglj/aiotutorial part_1/aio.py, written for
# pyfiber's tests (not a copy): it needs aiohttp, as the original does.
import asyncio
import time

import aiohttp


async def fetch(session, url):
    async with session.get(url) as response:
        return await response.read()


async def main():
    async with aiohttp.ClientSession() as session:
        pages = await asyncio.gather(*(fetch(session, 'http://example.com/') for _ in range(10)))
    return len(pages)


if __name__ == '__main__':
    start = time.time()
    print(asyncio.run(main()))
    print(time.time() - start)
