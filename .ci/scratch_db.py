"""Create or drop the scratch PostgreSQL database CI runs the suite against."""

import asyncio
import sys

import asyncpg

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def main(action: str, name: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
