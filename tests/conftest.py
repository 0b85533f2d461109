import os

import pytest

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
FIXTURES = os.path.join(SHARED, "fixtures", "official", "samples.jsonl")


@pytest.fixture
def fixtures_path() -> str:
    if not os.path.exists(FIXTURES):
        pytest.skip("../shared/fixtures is not next to this checkout")
    return FIXTURES
