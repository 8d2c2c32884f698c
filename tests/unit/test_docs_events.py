"""docs/events.md stays true: every event type in the catalogue is documented with its key and fields."""

from pathlib import Path

from shared.events import CATALOGUE

DOC = (Path(__file__).parents[2] / "docs" / "events.md").read_text()


def test_every_event_type_is_documented_with_its_fields():
    for model in CATALOGUE:
        row = next((line for line in DOC.splitlines() if f"`{model.ce_type()}`" in line), None)
        assert row is not None, f"{model.ce_type()} missing from docs/events.md"
        for field in model.model_fields:
            assert f"`{field}`" in row, f"{model.__name__}.{field} missing from docs/events.md"
