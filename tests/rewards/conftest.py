"""Fixtures of the reward tests."""

import pytest


@pytest.fixture(scope="session")
def sandbox_image():
    from sandboxes.testing import require_engine_and_image

    try:
        return require_engine_and_image()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
