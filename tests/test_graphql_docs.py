"""docs/graphql.md shows the schema the code builds."""

import re
from pathlib import Path

from app.graphql.schema import schema_sdl

DOC = Path(__file__).resolve().parent.parent / "docs" / "graphql.md"


def test_the_documented_schema_is_the_schema():
    block = re.search(r"<!-- schema:start -->\n```graphql\n(.*?)```\n<!-- schema:end -->", DOC.read_text(), re.S)
    assert block, "docs/graphql.md has no schema block"
    assert block.group(1) == schema_sdl() + "\n", (
        "docs/graphql.md's schema is out of date: print it again (see the Schema section)"
    )
