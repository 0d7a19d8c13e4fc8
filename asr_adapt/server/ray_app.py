"""``asr-adapt serve --ray``: the same app as a Ray Serve application, profiles multiplexed.

Two deployments (docs/serving-ray.md):

* :class:`Ingress` runs the FastAPI app of :func:`asr_adapt.server.app.create_app`, keys,
  limits, uploads and live streams included, over a :class:`RayEngine`: each transcription,
  and each decoding step of a live stream, goes to a model replica through a deployment
  handle with ``multiplexed_model_id`` set to the profile;
* :class:`ModelReplica` holds a :class:`~asr_adapt.server.engine.LocalEngine` (base models
  loaded once, profiles' adapters on them, mixed-adapter batches). Its ``@serve.multiplexed``
  loader makes a profile's adapter resident, so Ray routes that profile's requests to the
  replicas that already hold it, and evicts the least recently used past ``max_adapters``.

A live stream's state (the buffer, the committed words) stays in the ingress; every step is
a stateless call ``(buffer, prompt) -> text``, so any replica can take it.

Ray is imported here only; the CLI imports this module inside ``run()``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.exceptions import RayTaskError

from asr_adapt.decode.streaming import StreamingOptions, StreamingProcessor
from asr_adapt.models.transcriber import Transcript
from asr_adapt.server.app import create_app
from asr_adapt.server.ct2_engine import local_engine
from asr_adapt.server.engine import DecodeRequest
from asr_adapt.server.names import ModelRef
from asr_adapt.server.options import ServeOptions
from asr_adapt.server.ray_options import RayOptions
from asr_adapt.server.streams import LiveStream

APP_NAME = "asr-adapt"
#: What the replicas need from the environment of the process that starts them.
FORWARDED_ENV = ("ASR_ADAPT_HOME", "ASR_ADAPT_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def model_id(ref: ModelRef) -> str:
    """The multiplexed model id of ``ref``: the profile's name, or ``base:`` and the base
    model (never a profile name: those hold no ``:``)."""
    return ref.profile if ref.profile is not None else f"base:{ref.base}"


def _unwrap(error: RayTaskError) -> BaseException:
    """The replica's own exception (an AsrAdaptError is answered 400 by the app), not Ray's
    wrapper, whose message carries the replica's traceback."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, Exception) else error


# --------------------------------------------------------------------------- model replicas


class ModelReplica:
    """One replica: a :class:`LocalEngine` and the multiplexed loader of its adapters."""

    def __init__(self, options: ServeOptions) -> None:
        self.engine = local_engine(options)  # options.engine: torch or ct2
        self._refs: dict[str, ModelRef] = {}

        async def load(name: str) -> Any:
            return await asyncio.to_thread(self._load, self._refs[name])

        # Wired here, not as a decorated method, so that Ray's LRU holds as many profiles as
        # the engine keeps adapters resident (--max-adapters).
        self.get_model = serve.multiplexed(max_num_models_per_replica=options.max_adapters)(load)

    def _load(self, ref: ModelRef) -> Any:
        """The live-stream decoder of ``ref``, its adapter made resident on the base model."""
        decoder = self.engine.stream_decoder(ref)
        decoder.runner.call(decoder.adapter, lambda: None)
        return decoder

    async def _decoder(self, ref: ModelRef) -> Any:
        name = serve.get_multiplexed_model_id()
        if name != model_id(ref):
            raise ValueError(f"request for {model_id(ref)!r} routed as {name!r}")
        self._refs[name] = ref
        return await self.get_model(name)

    async def transcribe(self, ref: ModelRef, audio: np.ndarray, request: DecodeRequest) -> Transcript:
        await self._decoder(ref)
        return await self.engine.transcribe(ref, audio, request)

    async def forces_prefix(self, ref: ModelRef) -> bool:
        """Whether ``ref``'s stream decoder takes the committed words as a forced prefix."""
        return (await self._decoder(ref)).forces_prefix

    async def decode(self, ref: ModelRef, audio: np.ndarray, prompt: str, kwargs: dict) -> str:
        """One live-stream step: the text of ``audio`` (a stream's buffer)."""
        decoder = await self._decoder(ref)
        return await asyncio.to_thread(decoder, audio, prompt, **kwargs)

    async def resident(self, base: str) -> list[str]:
        """The profiles whose adapters this replica holds on ``base`` (for the operator and the tests)."""
        worker = await asyncio.to_thread(self.engine.worker, base)
        return [key.profile for key in worker.adapters.resident()]

    def __del__(self) -> None:
        if hasattr(self, "engine"):
            self.engine.close()


# --------------------------------------------------------------------------- the ingress


class RemoteDecoder:
    """A live stream's decoder whose steps run on a model replica. The stream calls it from
    its executor thread; the call itself is made on the ingress' event loop, which owns the
    deployment handle."""

    def __init__(self, replica: Any, ref: ModelRef, forces_prefix: bool, loop: asyncio.AbstractEventLoop,
                 timeout: float) -> None:
        self.replica, self.ref, self.forces_prefix = replica, ref, forces_prefix
        self.loop, self.timeout = loop, timeout

    def __call__(self, audio: np.ndarray, prompt: str = "", **kwargs) -> str:
        async def step() -> str:
            return await _remote(self.replica.decode.remote(self.ref, audio, prompt, kwargs))
        return asyncio.run_coroutine_threadsafe(step(), self.loop).result(self.timeout)


async def _remote(response: Any) -> Any:
    """Await a deployment response, raising the replica's own exception."""
    try:
        return await response
    except RayTaskError as error:
        raise _unwrap(error) from None


class RayEngine:
    """The app's engine inside the ingress: everything goes to the model replicas."""

    def __init__(self, models: Any, options: ServeOptions) -> None:
        self.models = models
        self.options = options
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="asr-adapt stream")

    def _replica(self, ref: ModelRef) -> Any:
        return self.models.options(multiplexed_model_id=model_id(ref))

    async def transcribe(self, ref: ModelRef, audio: np.ndarray, request: DecodeRequest) -> Transcript:
        return await _remote(self._replica(ref).transcribe.remote(ref, audio, request))

    async def open_stream(self, ref: ModelRef) -> LiveStream:
        forces_prefix = await _remote(self._replica(ref).forces_prefix.remote(ref))
        decoder = RemoteDecoder(self._replica(ref), ref, forces_prefix, asyncio.get_running_loop(),
                                self.options.request_timeout)
        return LiveStream(StreamingProcessor(decoder, StreamingOptions()), self._executor)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@serve.ingress()
class Ingress:
    """The FastAPI app over a :class:`RayEngine` (built on the replica, after ``__init__``)."""

    def __init__(self, options: ServeOptions, models: Any) -> None:
        self.options, self.models = options, models

    def __serve_build_asgi_app__(self):
        return create_app(self.options, RayEngine(self.models, self.options))


# --------------------------------------------------------------------------- running it


def build_application(options: ServeOptions, ray_options: RayOptions, replica_gpus: float = 0.0):
    """The Serve application: the ingress bound to ``ray_options.replicas`` model replicas."""
    env = {"env_vars": {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}}
    # Requests mostly wait (on their batch, on a live stream's next frame): a replica takes
    # enough at once to fill its batches, the ingress every open stream and upload.
    models = serve.deployment(ModelReplica, name="asr-adapt-models").options(
        num_replicas=ray_options.replicas,
        ray_actor_options={"num_cpus": ray_options.replica_cpus, "num_gpus": replica_gpus, "runtime_env": env},
        max_ongoing_requests=max(8, 2 * options.max_batch))
    ingress = serve.deployment(Ingress, name="asr-adapt-ingress").options(
        ray_actor_options={"num_cpus": ray_options.ingress_cpus, "runtime_env": env}, max_ongoing_requests=256)
    return ingress.bind(options, models.bind(options))


def replica_gpus(options: ServeOptions, ray_options: RayOptions) -> float:
    """GPUs each replica asks for: ``ray_options.replica_gpus``, else a share of the cluster's
    GPUs (at most one each) unless the device is the CPU. Ray hides GPUs from actors that ask
    for none."""
    if ray_options.replica_gpus is not None:
        return ray_options.replica_gpus
    gpus = ray.cluster_resources().get("GPU", 0.0)
    if options.device == "cpu" or gpus <= 0:
        return 0.0
    return min(1.0, gpus / ray_options.replicas)


@dataclass(frozen=True)
class RayServer:
    """A running Serve application, and where it answers."""

    base_url: str

    def stop(self) -> None:
        serve.delete(APP_NAME)
        serve.shutdown()


def start_on_ray(options: ServeOptions, ray_options: RayOptions) -> RayServer:
    """Deploy on the Ray cluster this process is connected to (``ray.init`` first) and
    return once every replica is up."""
    serve.start(proxy_location="HeadOnly", http_options={"host": options.host, "port": options.port})
    serve.run(build_application(options, ray_options, replica_gpus(options, ray_options)),
              name=APP_NAME, route_prefix="/", blocking=False)
    host = f"[{options.host}]" if ":" in options.host else options.host
    return RayServer(f"http://{host}:{options.port}")


def serve_on_ray(options: ServeOptions, ray_options: RayOptions) -> None:
    """``asr-adapt serve --ray``: connect to (or start) Ray, deploy, serve until Ctrl-C or
    SIGTERM, then take the application down (and a Ray instance started here)."""
    ray.init(address=ray_options.address, include_dashboard=False, logging_level="WARNING")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # (after ray.init, which sets its own)
        signal.signal(signum, lambda *_: stop.set())
    try:
        server = start_on_ray(options, ray_options)
        if not stop.is_set():
            print(f"asr-adapt serving on {server.base_url} on Ray Serve, {ray_options.replicas} model replica(s) "
                  f"({'API keys from ' + str(options.api_keys) if options.api_keys else 'no keys: this machine only'});"
                  " Ctrl-C stops", file=sys.stderr, flush=True)
        stop.wait()
        server.stop()
    finally:
        ray.shutdown()


__all__ = ["APP_NAME", "Ingress", "ModelReplica", "RayEngine", "RayServer", "build_application", "model_id",
           "serve_on_ray", "start_on_ray"]
