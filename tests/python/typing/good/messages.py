"""Uses the generated message stubs the way applications do; mypy --strict must pass and
the program must run (it asserts what the runtime does)."""

from __future__ import annotations

import datetime

from google.protobuf import descriptor_pb2, timestamp_pb2

from fixtures.common.v1 import common_pb2
from fixtures.keywords.v1 import keywords_pb2
from fixtures.kitchen.v1 import kitchen_pb2
from fixtures.options.v1 import options_pb2


def build_kitchen() -> kitchen_pb2.Kitchen:
    created = timestamp_pb2.Timestamp()
    created.FromDatetime(datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc))
    item = kitchen_pb2.Kitchen.Shelf.Item(
        label="pan", children=[kitchen_pb2.Kitchen.Shelf.Item(label="lid")]
    )
    return kitchen_pb2.Kitchen(
        id="k1",
        mode=kitchen_pb2.Kitchen.MODE_FAST,
        shelf=kitchen_pb2.Kitchen.Shelf(items=[item], mode=kitchen_pb2.Kitchen.Mode.MODE_SLOW),
        shelves=[kitchen_pb2.Kitchen.Shelf()],
        status=kitchen_pb2.STATUS_ACTIVE,
        page=common_pb2.PageRequest(page_size=10, page_token="t"),
        color=common_pb2.COLOR_RED,
        text="hello",
        number=None,
        labels={"a": "b"},
        shelves_by_id={1: kitchen_pb2.Kitchen.Shelf()},
        statuses={"x": kitchen_pb2.Status.STATUS_RUNNING},
        blobs={7: b"\x00"},
        colors={True: common_pb2.Color.COLOR_GREEN},
        created_at=created,
    )


def read_kitchen(kitchen: kitchen_pb2.Kitchen) -> None:
    # Scalars, enums and nested messages.
    kitchen_id: str = kitchen.id
    mode: kitchen_pb2.Kitchen.Mode.ValueType = kitchen.mode
    status: kitchen_pb2.Status.ValueType = kitchen.status
    color: common_pb2.Color.ValueType = kitchen.color
    shelf: kitchen_pb2.Kitchen.Shelf = kitchen.shelf
    first: kitchen_pb2.Kitchen.Shelf.Item = shelf.items[0]
    assert (kitchen_id, first.label, first.children[0].label) == ("k1", "pan", "lid")
    assert mode == kitchen_pb2.Kitchen.MODE_FAST and shelf.mode == kitchen_pb2.Kitchen.MODE_SLOW
    assert kitchen_pb2.Status.Name(status) == "STATUS_ACTIVE"
    assert common_pb2.Color.Value("COLOR_RED") == color
    page_size: int = kitchen.page.page_size
    assert page_size == 10

    # Enum values are ints at run time and `ValueType`s to the type checker.
    as_int: int = kitchen_pb2.Kitchen.MODE_SLOW
    assert as_int == 2
    names: list[str] = kitchen_pb2.Kitchen.Mode.keys()
    assert "MODE_FAST" in names

    # Repeated fields.
    kitchen.shelves.add(mode=kitchen_pb2.Kitchen.MODE_FAST)
    kitchen.shelves.append(kitchen_pb2.Kitchen.Shelf())
    assert len(kitchen.shelves) == 3
    scalars = kitchen_pb2.Scalars(r_string=["a"], r_double=(1.0, 2.5))
    scalars.r_string.append("b")
    scalars.r_int64.extend([1, 2])
    total: float = sum(scalars.r_double)
    assert list(scalars.r_string) == ["a", "b"] and total == 3.5

    # Maps.
    kitchen.labels["c"] = "d"
    label: str = kitchen.labels["a"]
    by_id: kitchen_pb2.Kitchen.Shelf = kitchen.shelves_by_id[2]  # created on access
    by_id.mode = kitchen_pb2.Kitchen.MODE_SLOW
    kitchen.statuses["y"] = kitchen_pb2.STATUS_DONE
    blob: bytes = kitchen.blobs[7]
    flag_color: common_pb2.Color.ValueType = kitchen.colors[True]
    assert (label, blob, flag_color) == ("b", b"\x00", common_pb2.COLOR_GREEN)
    assert sorted(kitchen.labels) == ["a", "c"] and 2 in kitchen.shelves_by_id

    # Oneofs: WhichOneof narrows to the member names.
    which = kitchen.WhichOneof("payload")
    if which == "text":
        assert kitchen.text == "hello"
    elif which is None:
        raise AssertionError("payload is set")
    kitchen.real = 1.5
    other = kitchen.WhichOneof("other")
    assert other == "real"

    # Presence: message fields, oneofs, oneof members and proto3 `optional` (with the
    # synthetic oneof `_o_int32`).
    assert kitchen.HasField("shelf") and kitchen.HasField("payload") and kitchen.HasField("text")
    assert not kitchen.HasField("ttl") and kitchen.HasField(b"page")
    scalars.o_int32 = 0
    assert scalars.HasField("o_int32") and scalars.HasField("_o_int32")
    optional_member = scalars.WhichOneof("_o_int32")
    assert optional_member == "o_int32"
    scalars.ClearField("_o_int32")
    kitchen.ClearField("labels")
    kitchen.ClearField("payload")
    assert not kitchen.HasField("payload") and not scalars.HasField("o_int32")

    # Well-known types.
    created: datetime.datetime = kitchen.created_at.ToDatetime()
    assert created.year == 2024
    kitchen.ttl.FromSeconds(30)
    kitchen.nickname.value = "nick"
    kitchen.attributes.update({"k": 1})
    kitchen.dynamic.string_value = "v"
    kitchen.extra.Pack(common_pb2.PageRequest(page_size=1))
    kitchen.mask.paths.append("id")

    # Field numbers, serialization and copies.
    assert kitchen_pb2.Kitchen.LABELS_FIELD_NUMBER == 20
    data: bytes = kitchen.SerializeToString()
    again = kitchen_pb2.Kitchen.FromString(data)
    again.CopyFrom(kitchen)
    assert again == kitchen


def keywords() -> None:
    # Fields named like Python keywords are not attributes, but the runtime takes their names.
    words = keywords_pb2.Keywords(type="t", self="s", match="m", enum=keywords_pb2.self)
    setattr(words, "from", "f")
    words.ClearField("from")
    assert (words.type, words.self, words.match) == ("t", "s", "m")
    assert words.enum == keywords_pb2.KeywordEnum.self
    named_type = keywords_pb2.type()
    assert not named_type.ListFields()


def extensions() -> None:
    options = descriptor_pb2.FieldOptions()
    options.Extensions[options_pb2.sensitive] = True
    options.Extensions[options_pb2.range].low = 1
    options.Extensions[kitchen_pb2.KitchenRequest.label_hint] = "hint"
    sensitive: bool = options.Extensions[options_pb2.sensitive]
    low: int = options.Extensions[options_pb2.range].low
    assert sensitive and low == 1 and options.HasExtension(options_pb2.sensitive)
    assert options_pb2.SENSITIVE_FIELD_NUMBER == 50004
    assert kitchen_pb2.KitchenRequest.LABEL_HINT_FIELD_NUMBER == 50100


if __name__ == "__main__":
    k = build_kitchen()
    read_kitchen(k)
    keywords()
    extensions()
    print("ok")
