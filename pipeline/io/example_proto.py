"""`tf.train.Example` without TensorFlow: the same protobuf messages, built from their schema.

Importing TensorFlow's own `example_pb2` imports all of TensorFlow (~2.5 s, ~500 MB), which a
TFRecord input on the OpenVINO or PyTorch runtime would otherwise pay for its parser alone. The
messages below are tensorflow/core/example/{feature,example}.proto field for field (same names,
numbers, types and packing), so the bytes are the same wire format both ways, and protobuf's C
parser (upb) decodes them as fast as it decodes TensorFlow's. They live in a private descriptor
pool: a process that also imports TensorFlow keeps its own `tensorflow.Example` untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

__all__ = ["Example", "encode_example"]

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, *, repeated: bool = False, message: str = "") -> _F:
    field = _F(name=name, number=number, type=kind, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if message:
        field.type_name = f".tensorflow.{message}"
    return field


def _schema() -> descriptor_pb2.FileDescriptorProto:
    schema = descriptor_pb2.FileDescriptorProto(name="mnistkit/tf_example.proto", package="tensorflow", syntax="proto3")
    for name, kind in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT), ("Int64List", _F.TYPE_INT64)):
        value = _field("value", 1, kind, repeated=True)
        if kind != _F.TYPE_BYTES:
            value.options.packed = True  # spelled out upstream too (proto3's default)
        if kind == _F.TYPE_INT64:
            value.options.jstype = descriptor_pb2.FieldOptions.JS_STRING
        schema.message_type.add(name=name, field=[value])
    feature = schema.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), start=1):
        message = "".join(part.title() for part in name.split("_"))
        feature.field.append(_field(name, number, _F.TYPE_MESSAGE, message=message))
        feature.field[-1].oneof_index = 0
    features = schema.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.extend([_field("key", 1, _F.TYPE_STRING), _field("value", 2, _F.TYPE_MESSAGE, message="Feature")])
    features.field.append(_field("feature", 1, _F.TYPE_MESSAGE, repeated=True, message="Features.FeatureEntry"))
    schema.message_type.add(name="Example", field=[_field("features", 1, _F.TYPE_MESSAGE, message="Features")])
    return schema


def _example_class() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_schema())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _example_class()


def encode_example(key: int, image: bytes, extra_int64s: Mapping[str, int] | None = None) -> bytes:
    """A serialized Example with `key` (int64), `image` (bytes) and one int64 feature per `extra_int64s` item."""
    example = Example()
    features = example.features.feature
    features["key"].int64_list.value.append(key)
    features["image"].bytes_list.value.append(image)
    for name, value in (extra_int64s or {}).items():
        features[name].int64_list.value.append(value)
    return example.SerializeToString()
