"""Write a run's model in a deployment format, and read it back with that format's own runtime.

Every format is built from one serving model (:func:`serving_model`): uint8 RGB images at the run's
native size in (``image``), the classifier called with ``training=False`` on them, the softmax out
(``probabilities``). ``training=False`` is explicit on purpose: Keras 3.15 runs the nested backbone's
BatchNorm in training mode when a tltui classifier (Resizing before a nested backbone) is called
with ``training`` unset, and that is how ``model.export`` traces it for ``tf_saved_model`` and
``onnx`` (its ONNX also turns the Normalization layer's constants into unfed graph inputs).

- ``savedmodel``: Keras's :class:`keras.export.ExportArchive` (what ``model.export`` uses), one
  endpoint ``serve`` (also ``serving_default``) calling the serving model with ``training=False``.
- ``litert``: ``model.export(format="litert")`` on the serving model (its TFLite converter, which
  calls the model with ``training=False``), built-in ops only so any LiteRT runtime runs the file;
  ``float16`` / ``dynamic`` / ``int8`` set the converter's optimizations, ``int8`` with the
  calibration images as the representative dataset and every op in int8 (the uint8 input as is).
- ``onnx``: the serving function frozen (variables become constants) and converted by ``tf2onnx``
  (the converter Keras's own ONNX export calls) at opset :data:`ONNX_OPSET`; ``dynamic`` / ``int8``
  quantized by ``onnxruntime.quantization`` (``int8``: static QDQ, calibrated on the same images).

A converter that cannot handle the model raises :class:`ConvertError` with the reason in one line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tltui.core.exports import ARTIFACT, INPUT_NAME, OUTPUT_NAME, SIGNATURE
from tltui.worker.errors import WorkerError, first_line

#: tf2onnx's opset: onnxruntime 1.20+ runs it, tf2onnx 1.17 converts every op tltui's backbones use to it.
ONNX_OPSET = 17

#: images -> probabilities, both numpy: uint8 [N, H, W, 3] -> float32 [N, classes]
Runner = Callable[[Any], Any]
#: a fresh iterator over calibration images, each uint8 [H, W, 3]
Calibration = Callable[[], Iterable[Any]]


class ConvertError(WorkerError):
    """A converter (or the runtime loading its output) cannot handle the model; the message is the reason."""


class MissingRuntime(WorkerError):
    """The format's converter or runtime is not installed (the ``export`` extra)."""


def _need(module: str, fmt: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingRuntime(
            f"--format {fmt} needs {module.split('.')[0]}, which is not installed: pip install 'tltui[export]'"
        ) from None


def serving_model(model: Any, size: tuple[int, int]) -> Any:
    """uint8 ``image`` [N, H, W, 3] -> ``{"probabilities": model(float image, training=False)}``."""
    import keras

    h, w = size
    image = keras.Input((h, w, 3), dtype="uint8", name=INPUT_NAME)
    probs = model(keras.ops.cast(image, "float32"), training=False)
    return keras.Model(image, {OUTPUT_NAME: probs}, name="exported")


def input_spec(size: tuple[int, int]) -> Any:
    import tensorflow as tf

    return tf.TensorSpec([None, size[0], size[1], 3], tf.uint8, name=INPUT_NAME)


def write(
    fmt: str,
    quantize: str | None,
    model: Any,
    size: tuple[int, int],
    folder: Path,
    calibration: Calibration | None = None,
) -> Path:
    """The artifact of ``model`` in ``folder`` (named :data:`tltui.core.exports.ARTIFACT`); its path."""
    serving = serving_model(model, size)
    path = folder / ARTIFACT[fmt]
    if fmt == "savedmodel":
        _savedmodel(serving, size, path)
    elif fmt == "litert":
        _litert(serving, size, path, quantize, calibration)
    elif fmt == "onnx":
        _onnx(serving, size, path, quantize, calibration)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return path


def _savedmodel(serving: Any, size: tuple[int, int], path: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint("serve", lambda image: serving(image, training=False), input_signature=[input_spec(size)])
    try:
        archive.write_out(str(path), verbose=False)
    except Exception as e:  # noqa: BLE001 - TF raises many types for a graph it cannot save
        raise ConvertError(first_line(e)) from e


def _litert(
    serving: Any, size: tuple[int, int], path: Path, quantize: str | None, calibration: Calibration | None
) -> None:
    import tensorflow as tf

    _need("ai_edge_litert.interpreter", "litert")
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    options: dict[str, Any] = {"target_spec": {"supported_ops": builtins}}
    if quantize is not None:
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        options["target_spec"] = {"supported_ops": builtins, "supported_types": [tf.float16]}
    elif quantize == "int8":
        if calibration is None:
            raise ValueError("int8 needs calibration images")
        cal = calibration

        def representative() -> Iterator[list[Any]]:
            for image in cal():
                yield [image[None]]

        options["representative_dataset"] = representative
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
        options["inference_input_type"] = tf.uint8
    try:
        serving.export(str(path), format="litert", input_signature=[input_spec(size)], verbose=False, **options)
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError, ValueError, RuntimeError...
        raise ConvertError(litert_reason(e)) from e


def litert_reason(e: BaseException) -> str:
    """The one line of a TFLite converter error: the ops it has no built-in kernel for, else its first error."""
    text = str(e)
    ops = sorted({op.strip() for m in re.finditer(r"(?:Custom|Flex) ops: ([^\n]+)", text) for op in m[1].split(",")})
    if ops:
        return f"no LiteRT built-in kernel for {', '.join(o for o in ops if o)}"
    m = re.search(r"error: ([^\n]+)", text)
    return m[1].strip()[:200] if m else first_line(e)


class _Collect(logging.Handler):
    """tf2onnx logs the ops it cannot map (then writes them into the graph as they are)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.unsupported: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("Unsupported ops"):
            self.unsupported += re.findall(r"'([^']+)'", msg)


def _onnx(
    serving: Any, size: tuple[int, int], path: Path, quantize: str | None, calibration: Calibration | None
) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    tf2onnx = _need("tf2onnx", "onnx")
    _need("onnxruntime", "onnx")
    try:  # Keras's own numpy-2 fixes to tf2onnx, as its ONNX export applies them
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:
        pass
    fn = tf.function(lambda image: serving(image, training=False)[OUTPUT_NAME], input_signature=[input_spec(size)])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    float_path = path if quantize is None else path.with_name("float.onnx")
    collect = _Collect()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(collect)
    try:
        tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(),
            input_names=inputs,
            output_names=outputs,
            opset=ONNX_OPSET,
            tensors_to_rename={inputs[0]: INPUT_NAME, outputs[0]: OUTPUT_NAME},
            output_path=str(float_path),
        )
    except Exception as e:  # noqa: BLE001 - tf2onnx raises whatever its handlers raise
        raise ConvertError(f"tf2onnx: {first_line(e)}") from e
    finally:
        logger.removeHandler(collect)
    if collect.unsupported:
        ops = ", ".join(sorted(set(collect.unsupported)))
        raise ConvertError(f"tf2onnx has no ONNX (opset {ONNX_OPSET}) conversion for {ops}")
    if quantize is None:
        return
    _quantize_onnx(float_path, path, quantize, calibration)
    float_path.unlink()


def _quantize_onnx(src: Path, dst: Path, quantize: str, calibration: Calibration | None) -> None:
    from onnxruntime import quantization as q

    try:
        if quantize == "dynamic":
            q.quantize_dynamic(str(src), str(dst), weight_type=q.QuantType.QInt8)
            return
        if calibration is None:
            raise ValueError("int8 needs calibration images")
        images = iter(calibration())

        class Reader(q.CalibrationDataReader):
            def get_next(self) -> dict[str, Any] | None:
                image = next(images, None)
                return None if image is None else {INPUT_NAME: image[None]}

        q.quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=True,
        )
    except Exception as e:  # noqa: BLE001 - onnxruntime.quantization raises many types
        raise ConvertError(f"onnxruntime.quantization ({quantize}): {first_line(e)}") from e


# ---------------------------------------------------------------------------- reading back


def open_artifact(fmt: str, path: Path) -> Runner:
    """A function from uint8 images to probabilities, through the format's own runtime (never Keras)."""
    try:
        if fmt == "savedmodel":
            return _open_savedmodel(path)
        if fmt == "litert":
            return _open_litert(path)
        if fmt == "onnx":
            return _open_onnx(path)
    except (MissingRuntime, ConvertError):
        raise
    except Exception as e:  # noqa: BLE001 - each runtime raises its own types for a file it cannot run
        raise ConvertError(f"{first_line(e)}") from e
    raise ValueError(f"unknown format {fmt!r}")


def _open_savedmodel(path: Path) -> Runner:
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def run(images: Any) -> Any:
        return fn(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()

    return run


def _open_litert(path: Path) -> Runner:
    interpreter = _need("ai_edge_litert.interpreter", "litert")
    runner = interpreter.Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE)

    def run(images: Any) -> Any:
        return runner(**{INPUT_NAME: images})[OUTPUT_NAME]  # the runner resizes its input to each batch

    return run


def _open_onnx(path: Path) -> Runner:
    ort = _need("onnxruntime", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: Any) -> Any:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    return run


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (a SavedModel)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
