"""Every foreign key of the migrated schema has an index PostgreSQL can use to check it.

Deleting (or re-keying) a referenced row makes PostgreSQL look up the rows that point at it:
`ON DELETE CASCADE`, `SET NULL` and plain checks alike. Without an index leading with the
referencing columns that lookup is a scan of the whole referencing table, once per deleted
row; the retention purge fell to about 9 rows per second on a million jobs that way.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# A foreign key is covered by a valid index whose leading columns are exactly the key's
# columns (in any order). A partial index counts only if its predicate is `<column> IS NOT
# NULL` on the key's columns: the lookup `WHERE fk = $1` implies that, and nothing else.
# `ix_job_workflow_step` (partial on `retried_by IS NULL` too) is the case this rules out.
UNINDEXED_FOREIGN_KEYS = text(
    """
    SELECT fk.conrelid::regclass::text AS table_name, fk.conname AS constraint_name
    FROM pg_constraint AS fk
    WHERE fk.contype = 'f'
      AND fk.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = :schema)
      AND NOT EXISTS (
        SELECT 1
        FROM pg_index AS ix,
             LATERAL (SELECT string_to_array(ix.indkey::text, ' ')::int2[] AS columns) AS key
        WHERE ix.indrelid = fk.conrelid
          AND ix.indisvalid
          AND key.columns[1:cardinality(fk.conkey)] @> fk.conkey
          AND key.columns[1:cardinality(fk.conkey)] <@ fk.conkey
          AND (
            ix.indpred IS NULL
            OR pg_get_expr(ix.indpred, ix.indrelid) = (
              SELECT CASE
                WHEN count(*) = 1 THEN min(format('(%I IS NOT NULL)', att.attname))
                ELSE '(' || string_agg(
                  format('(%I IS NOT NULL)', att.attname), ' AND ' ORDER BY col.position
                ) || ')'
              END
              FROM unnest(fk.conkey) WITH ORDINALITY AS col (attnum, position)
              JOIN pg_attribute AS att
                ON att.attrelid = fk.conrelid AND att.attnum = col.attnum
            )
          )
      )
    ORDER BY table_name, constraint_name
    """
)


async def _unindexed_foreign_keys(session: AsyncSession, *, schema: str) -> list[str]:
    rows = (await session.execute(UNINDEXED_FOREIGN_KEYS, {"schema": schema})).all()
    return [f"{row.table_name}.{row.constraint_name}" for row in rows]


async def test_every_foreign_key_has_an_index(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        schema = (await session.execute(text("SELECT current_schema()"))).scalar_one()
        unindexed = await _unindexed_foreign_keys(session, schema=schema)

    assert not unindexed, f"foreign keys without an index leading with their columns: {unindexed}"


async def test_a_partial_index_counts_only_when_the_lookup_implies_its_predicate(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        # A temporary table: its own schema, gone with the session, invisible to other tests.
        await session.execute(
            text(
                "CREATE TEMPORARY TABLE probe (id int PRIMARY KEY, kind text,"
                " parent int CONSTRAINT probe_parent_fk REFERENCES probe (id))"
            )
        )
        schema = (
            await session.execute(
                text("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
            )
        ).scalar_one()
        await session.execute(text("CREATE INDEX ON probe (parent, id) WHERE kind = 'x'"))
        with_unusable_index = await _unindexed_foreign_keys(session, schema=schema)
        await session.execute(text("CREATE INDEX ON probe (parent) WHERE parent IS NOT NULL"))
        with_usable_index = await _unindexed_foreign_keys(session, schema=schema)
        await session.rollback()

    assert with_unusable_index == ["probe.probe_parent_fk"]
    assert with_usable_index == []
