"""One browser session's chat: persona, one or two assistant lanes, scores, induction and export.

Pure Python (no gradio): the UI calls these functions and only renders what they return. A session is a
mutable object guarded by a lock, so a scoring step that finishes after the next message was sent writes
its score into the right turn instead of overwriting the newer conversation.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from aloe_bench.core.backends import BackendError, ChatBackend, Completion, GenerationConfig, build_backend
from aloe_bench.core.conversation import ConversationRoles, ConversationState, TurnRecord, converse
from aloe_bench.core.judge import Judge, JudgeConfig, JudgeItem, Verdict
from aloe_bench.core.errors import AloeError
from aloe_bench.core.metrics import aloe_metrics
from aloe_bench.core.personas import Persona, PersonaSet, combine, load_persona_set, packaged_data, read_pool
from aloe_bench.core.prompts import PromptBook, load_prompts
from aloe_bench.core.simulator import UserSimulator

from .cache_scope import fresh_scope, release_session, session_scoped
from .space_config import SpaceConfig
from .redact import redact, scrub


class SpaceError(AloeError, ValueError):
    """Something the person asked for cannot be done; the message is shown in the UI as is (secrets redacted)."""

    def __init__(self, message: str):
        super().__init__(redact(message))


# ---------------------------------------------------------------------------------------------------
# Personas
# ---------------------------------------------------------------------------------------------------
def persona_sets(extra_source: str | None = None) -> dict[str, PersonaSet]:
    """The persona sets offered in the picker: the packaged eval set, the seed pools, and an optional extra one."""
    sets = {"eval (20 profiles x 5 personalities)": load_persona_set("default")}
    seeds = combine(read_pool(packaged_data("seed_profiles.jsonl"), "profile"),
                    read_pool(packaged_data("seed_personalities.jsonl"), "personality"), max_personalities=5)
    sets["seed pools (24 profiles x 5 personalities)"] = PersonaSet("seed", tuple(seeds), "seed")
    if extra_source and extra_source != "default":
        extra = load_persona_set(extra_source)
        sets[f"{extra.name} ({len(extra)} personas)"] = extra
    return sets


def persona_label(persona: Persona) -> str:
    head = persona.profile if len(persona.profile) <= 70 else persona.profile[:67] + "..."
    return f"{persona.id}: {head}"


def find_persona(persona_set: PersonaSet, label: str) -> Persona:
    for persona in persona_set:
        if persona_label(persona) == label or persona.id == label:
            return persona
    raise SpaceError(f"no persona {label!r} in the set {persona_set.name!r}")


def random_persona(persona_set: PersonaSet, rng: random.Random | None = None) -> Persona:
    return (rng or random).choice(persona_set.personas)


def custom_persona(profile: str, personality: str, max_chars: int) -> Persona:
    """A persona written by hand; both parts are required and bounded like any other input."""
    profile, personality = (profile or "").strip(), (personality or "").strip()
    if not profile or not personality:
        raise SpaceError("write both a profile (who the user is) and a personality (how they talk)")
    for name, text in (("profile", profile), ("personality", personality)):
        if len(text) > max_chars:
            raise SpaceError(f"the {name} has {len(text)} characters; the limit is {max_chars}")
    return Persona("custom", profile, personality, "custom", "custom")


def persona_markdown(persona: Persona | None) -> str:
    if persona is None:
        return "*No persona chosen yet: pick one, draw one at random, or write your own.*"
    return f"**Profile** ({persona.profile_id or persona.id}): {persona.profile}\n\n" \
           f"**Personality** ({persona.personality_id or persona.id}): {persona.personality}"


# ---------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------
@dataclass
class Turn:
    """One user message and one lane's reply to it, with the judge's verdict once it is known."""

    user: str
    reply: str = ""
    score: float | None = None
    judge: str = "pending"  # pending | scored | failed
    judge_error: str | None = None
    distribution: dict | None = None
    latency_s: float = 0.0
    done: bool = False  # the reply finished streaming


@dataclass
class Lane:
    """One assistant model's side of the conversation."""

    model: str
    turns: list[Turn] = field(default_factory=list)

    def history(self, upto: int | None = None) -> list[dict]:
        """The conversation as chat messages (assistant's point of view), turns before `upto`."""
        messages = []
        for turn in self.turns[:upto]:
            messages.append({"role": "user", "content": turn.user})
            if turn.reply:
                messages.append({"role": "assistant", "content": turn.reply})
        return messages

    def scores(self) -> list[float | None]:
        return [turn.score for turn in self.turns]


def running_metrics(scores: list[float | None]) -> dict | None:
    """ALOE metrics of this single conversation's curve; None until every turn so far has a score (>= 2)."""
    if len(scores) < 2 or any(s is None for s in scores):
        return None
    return aloe_metrics(scores)


def trend_line(scores: list[float | None]) -> list[float] | None:
    """The least-squares line behind IR at turns 1..K (flat at the score for one turn); None with gaps."""
    if not scores or any(s is None for s in scores):
        return None
    if len(scores) == 1:
        return [float(scores[0])]
    metrics = aloe_metrics(scores)
    mean_turn = (len(scores) + 1) / 2
    return [metrics["AL_avg"] + metrics["IR"] * (k - mean_turn) for k in range(1, len(scores) + 1)]


# Every ChatSession alive in this process, weakly held (it never keeps one alive): what the load test counts.
_LIVE: weakref.WeakSet[ChatSession] = weakref.WeakSet()


def live_sessions() -> int:
    """How many ChatSession objects exist right now (the UI's template included)."""
    return len(_LIVE)


class ChatSession:
    """Everything one browser session holds. Mutated in place under `lock`.

    A plain class, not a dataclass: gradio would try to serialise a dataclass State value (and its lock).
    The module keeps no registry of sessions (only the weak `_LIVE` set): gradio's per-session state owns them,
    and drops them after the idle time-to-live or beyond the session capacity (see ui.py).
    """

    def __init__(self, models: list[str], persona: Persona | None = None):
        self.models = list(models)
        self.persona = persona
        self.lanes = [Lane(model) for model in self.models]
        self.revealed: str | None = None
        self.revealed_turns = 0
        self.notice = ""
        self.lock = threading.RLock()
        self.cache_scope = fresh_scope()  # prompt-prefix cache scope of this visitor (space/cache_scope.py)
        _LIVE.add(self)

    def close(self) -> None:
        """Free the conversation (gradio calls this when the session's state expires)."""
        with self.lock:
            self.lanes = [Lane(model) for model in self.models]
            self.persona, self.revealed, self.revealed_turns, self.notice = None, None, 0, ""
            release_session(self)

    def __deepcopy__(self, memo):  # gradio copies a State's initial value per browser session
        return ChatSession(self.models, self.persona)

    @property
    def n_turns(self) -> int:
        return len(self.lanes[0].turns)

    def reset(self, persona: Persona | None = None, models: list[str] | None = None) -> None:
        with self.lock:
            if models is not None:
                self.models = list(models)
            if persona is not None:
                self.persona = persona
            self.lanes = [Lane(model) for model in self.models]
            self.revealed, self.revealed_turns, self.notice = None, 0, ""
            release_session(self)


# ---------------------------------------------------------------------------------------------------
# Roles: the models behind a session
# ---------------------------------------------------------------------------------------------------
Loader = Callable[[str], ChatBackend]


@dataclass
class SpaceRoles:
    """The backends a session talks to. `loader` is `build_backend` (one shared instance per spec)."""

    config: SpaceConfig
    loader: Loader = build_backend
    prompts: PromptBook = field(default_factory=load_prompts)

    def _load(self, spec: str, role: str) -> ChatBackend:
        try:
            return self.loader(spec)
        except Exception as exc:  # shown in the UI; the session stays usable with other settings
            raise SpaceError(f"could not load the {role} model {spec!r}: {exc}") from None  # no chained secrets

    def assistant(self, spec: str) -> ChatBackend:
        return self._load(spec, "assistant")

    def judge(self) -> Judge:
        return Judge(self._load(self.config.judge_model, "judge"), JudgeConfig(preset=self.config.judge_preset),
                     self.prompts)

    def simulator(self) -> UserSimulator:
        config = GenerationConfig(max_new_tokens=self.config.user_max_new_tokens, temperature=0.7, top_p=0.95,
                                  seed=int(time.time()) % 100_000)
        return UserSimulator(self._load(self.config.user_model, "user simulator"), config, self.prompts,
                             max_chars=self.config.max_input_chars)

    def induction(self) -> ChatBackend:
        return self._load(self.config.induction_model or self.config.judge_model, "induction")

    def reply_config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.config.reply_max_new_tokens, temperature=self.config.temperature,
                                top_p=0.95 if self.config.temperature > 0 else 1.0)


class BoundedLoader:
    """The Space's model loader: the configured specs always load; visitors may add `max_extra_models` more.

    Every loaded backend stays in memory for the life of the process (build_backend shares one per spec), so
    an open model box would let visitors grow the process without bound, one spec at a time. The configured
    specs are the owner's and load with the owner's credentials. On a public Space (`config.public`) any other
    spec is a visitor's and loads with `token=visitor_token or False`: a signed-in visitor's own Hub token or
    none, never HF_TOKEN, and an endpoint spec (which only has the owner's key) is refused by the backend; the
    `loader` must take that `token` keyword.
    """

    def __init__(self, loader: Loader, config: SpaceConfig):
        self.loader = loader
        self.configured = {s for s in (config.model, config.compare_model, config.user_model, config.judge_model,
                                       config.induction_model) if s}
        self.max_extra = config.max_extra_models
        self.public = config.public
        self.extra: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()

    def __call__(self, spec: str, visitor_token: str | None = None) -> ChatBackend:
        if spec in self.configured:
            return self.loader(spec)
        owner = not self.public  # e.g. `aloe space` on your own machine: who changes the models is the owner
        token = None if owner else (visitor_token or False)
        slot = (spec, hashlib.sha256(token.encode()).hexdigest() if isinstance(token, str) else None)
        reserved = False
        with self._lock:
            if slot not in self.extra:
                if len(self.extra) >= self.max_extra:
                    raise SpaceError(f"this Space already loaded its {self.max_extra} extra model(s); use one of "
                                     f"{sorted(self.configured | {s for s, _ in self.extra})}")
                self.extra.add(slot)
                reserved = True
        try:
            return self.loader(spec) if owner else self.loader(spec, token=token)
        except Exception:
            if reserved:  # a spec that failed to load does not use up the allowance
                with self._lock:
                    self.extra.discard(slot)
            raise

    def for_visitor(self, visitor_token: str | None) -> Loader:
        """The loader of one visitor's events: their own Hub token (None: not signed in) for the specs they chose."""
        return functools.partial(self, visitor_token=visitor_token)


def new_session(config: SpaceConfig) -> ChatSession:
    models = [config.model] + ([config.compare_model] if config.compare_model else [])
    return ChatSession(models)


# ---------------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------------
def check_message(session: ChatSession, text: str, config: SpaceConfig) -> str:
    """The message to send, or a SpaceError saying why it cannot be sent."""
    text = (text or "").strip()
    if session.persona is None:
        raise SpaceError("choose a persona first (you chat as that user)")
    if not text:
        raise SpaceError("the message is empty")
    if len(text) > config.max_input_chars:
        raise SpaceError(f"the message has {len(text)} characters; the limit is {config.max_input_chars}")
    if session.n_turns >= config.max_turns:
        raise SpaceError(f"this conversation reached the limit of {config.max_turns} turns: press Reset")
    return text


@session_scoped
def stream_turn(session: ChatSession, roles: SpaceRoles, text: str) -> Iterator[ChatSession]:
    """Add the user's message to every lane and stream each lane's reply; yields as text grows.

    A backend error removes the unfinished turn from every lane (so lanes stay aligned), then raises
    SpaceError: the earlier conversation is untouched and the message can be sent again.
    """
    text = check_message(session, text, roles.config)
    config = roles.reply_config()
    with session.lock:
        backends = [roles.assistant(lane.model) for lane in session.lanes]
        index = session.n_turns
        created = [Turn(user=text) for _ in session.lanes]
        for lane, turn in zip(session.lanes, created):
            lane.turns.append(turn)

    def drop_unfinished():  # by identity: a cancelled stream may be closed late, after newer turns exist
        with session.lock:
            for lane, turn in zip(session.lanes, created):
                lane.turns[:] = [t for t in lane.turns if t is not turn]

    yield session
    try:
        for lane, backend, turn in zip(session.lanes, backends, created):
            started = time.perf_counter()
            messages = lane.history(index) + [{"role": "user", "content": text}]
            for partial in backend.stream(messages, config):
                turn.reply = partial
                yield session
            turn.latency_s = round(time.perf_counter() - started, 3)
            if not turn.reply.strip():
                raise BackendError(f"{lane.model} returned an empty reply")
            turn.done = True
    except GeneratorExit:  # stopped by the person: drop the unfinished turn
        drop_unfinished()
        raise
    except Exception as exc:
        drop_unfinished()
        raise SpaceError(f"the assistant failed: {exc}") from None
    yield session


def stop(session: ChatSession) -> int:
    """After Stop: drop turns whose reply had not finished in every lane; returns how many were dropped."""
    with session.lock:
        unfinished = {i for lane in session.lanes for i, turn in enumerate(lane.turns) if not turn.done}
        for lane in session.lanes:
            lane.turns[:] = [t for i, t in enumerate(lane.turns) if i not in unfinished]
    return len(unfinished)


@session_scoped
def score_pending(session: ChatSession, roles: SpaceRoles) -> int:
    """Judge every reply that has no verdict yet (all lanes in one batch); returns how many were judged."""
    with session.lock:
        if session.persona is None:
            return 0
        todo = [(lane, i) for lane in session.lanes for i, turn in enumerate(lane.turns)
                if turn.judge == "pending" and turn.done]
        items = [JudgeItem(session.persona, lane.turns[i].user, lane.turns[i].reply, lane.history(i))
                 for lane, i in todo]
    if not todo:
        return 0
    judge = roles.judge()
    error = None
    try:
        verdicts = judge.score(items)
    except Exception as exc:  # a dead judge marks the turns failed; it never invents a score
        verdicts = None
        error = redact(f"judge error: {exc}")
    with session.lock:
        for n, (lane, i) in enumerate(todo):
            if i >= len(lane.turns):  # the conversation was reset meanwhile
                continue
            _apply_verdict(lane.turns[i], None if verdicts is None else verdicts[n], error)
    return len(todo)


def _apply_verdict(turn, verdict, error: str | None) -> None:
    """Store the judge's verdict on `turn`, or mark it failed with `error` when the judge call itself failed."""
    if verdict is None:
        turn.judge, turn.judge_error = "failed", error
        return
    turn.score, turn.distribution = verdict.score, verdict.distribution
    turn.judge = "failed" if verdict.failed else "scored"
    turn.judge_error = redact(verdict.error)


@session_scoped
def induce(session: ChatSession, roles: SpaceRoles) -> str | None:
    """Ask the induction model what the user has revealed so far (from the first lane's conversation)."""
    with session.lock:
        lane = session.lanes[0]
        if not lane.turns:
            return None
        history = lane.history()
        n_turns = len(lane.turns)
        persona = session.persona
    if persona is None:
        return None
    prompt = roles.prompts["induction"]
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in history]
    messages = [{"role": "system", "content": prompt["system"]},
                {"role": "user", "content": prompt.render("user", profile=persona.profile,
                                                          personality=persona.personality, history="\n".join(lines))}]
    backend = roles.induction()
    config = GenerationConfig(max_new_tokens=roles.config.induction_max_new_tokens)
    completion = backend.generate([messages], config)[0]
    if not completion.ok:
        raise SpaceError(f"the induction model failed: {completion.error}")
    with session.lock:
        session.revealed, session.revealed_turns = completion.text.strip(), n_turns
    return session.revealed


@session_scoped
def simulate_user(session: ChatSession, roles: SpaceRoles) -> str:
    """The role-played user's next message, following the first lane's conversation."""
    if session.persona is None:
        raise SpaceError("choose a persona first: the simulated user plays it")
    completion = roles.simulator().next_messages([session.persona], [session.lanes[0].history()])[0]
    if not completion.ok:
        raise SpaceError(f"the user simulator failed: {completion.error}")
    return completion.text


@session_scoped
def autoplay(session: ChatSession, roles: SpaceRoles, n_turns: int) -> Iterator[ChatSession]:
    """Let the simulated user play the persona for `n_turns`; yields as each reply grows and each score lands.

    The turns run on the core's conversation task (`aloe_bench.core.conversation.converse`, as `aloe eval`
    does): the next user message is written while the judge scores the last reply. Each lane's reply streams
    (the first lane's continues the conversation); a turn appears once the previous one is scored.
    """
    n_turns = max(1, min(int(n_turns), roles.config.max_autoplay_turns))
    if session.persona is None:
        raise SpaceError("choose a persona first: the simulated user plays it")
    play = min(n_turns, roles.config.max_turns - session.n_turns)
    if play > 0:
        yield from _AutoPlay(session, roles).run(play)
    if play < n_turns:
        session.notice = f"stopped: the conversation reached {roles.config.max_turns} turns"


_DONE = object()


class _AutoPlay:
    """Runs `converse` on an event loop of its own thread and hands control to the caller's generator at every
    visible change (a turn added, a reply grown, a score in): the task waits until the caller asks for more, so
    the page sees each step, and closing the generator (Stop) cancels the task and drops the unfinished turn."""

    def __init__(self, session: ChatSession, roles: SpaceRoles):
        self.session, self.roles = session, roles
        self.events: queue.Queue = queue.Queue()
        self.closed = False
        self.made: dict[int, list[tuple[Lane, Turn]]] = {}  # turn number -> each lane's Turn
        self.judged: dict[int, asyncio.Event] = {}
        self.failure: str | None = None

    # -- hand-over points --------------------------------------------------------------------------
    def _handover(self) -> None:
        """From a worker thread: show the change, wait until the caller asks for the next one."""
        if not self.closed:
            done = Future()
            self.events.put(done)
            done.result()

    async def _ahandover(self) -> None:
        if not self.closed:
            done = Future()
            self.events.put(done)
            await asyncio.wrap_future(done)

    @staticmethod
    def _release(done: Future) -> None:
        try:
            done.set_result(None)
        except InvalidStateError:  # its waiter was cancelled
            pass

    # -- the hooks the conversation task calls -------------------------------------------------------
    async def _reply(self, state: ConversationState, message: str) -> Completion:
        turn_no = state.turns_done + 1
        if turn_no - 1 in self.judged:  # show turns in order: the last one's score first
            await self.judged[turn_no - 1].wait()
        session, config = self.session, self.roles.reply_config()
        with session.lock:
            index = session.n_turns
            made = [(lane, Turn(user=message)) for lane in session.lanes]
            for lane, turn in made:
                lane.turns.append(turn)
        self.made[turn_no] = made
        self.judged[turn_no] = asyncio.Event()
        await self._ahandover()
        for (lane, turn), backend in zip(made, self.backends):
            started = time.perf_counter()
            messages = lane.history(index) + [{"role": "user", "content": message}]
            error = await asyncio.to_thread(self._stream, backend, messages, config, turn)
            turn.latency_s = round(time.perf_counter() - started, 3)
            if error is None and not turn.reply.strip():
                error = f"{lane.model} returned an empty reply"
            if error is not None:
                return Completion(None, error=error)
            turn.done = True
        first = made[0][1]
        return Completion(first.reply, latency_s=first.latency_s)

    def _stream(self, backend: ChatBackend, messages: list[dict], config: GenerationConfig, turn: Turn) -> str | None:
        """One lane's reply, streamed into `turn` (in a worker thread); returns an error, or None."""
        parts = backend.stream(messages, config)
        try:
            for partial in parts:
                if self.closed:
                    return "stopped"
                turn.reply = partial
                self._handover()
        except Exception as exc:  # reported as the assistant's failure, with the earlier turns untouched
            return str(exc)
        finally:
            parts.close()
        return None

    async def _score(self, state: ConversationState, record: TurnRecord) -> Verdict | None:
        """Judge this turn in every lane at once; a dead judge marks the turns failed, it never invents a score."""
        session, made = self.session, self.made[record.turn]
        with session.lock:
            todo = [(turn, lane.history(lane.turns.index(turn))) for lane, turn in made
                    if any(t is turn for t in lane.turns)]  # a reset or Stop may have dropped it meanwhile
        verdicts, error = None, None
        try:
            judge = self.roles.judge()
            verdicts = await asyncio.gather(*(judge.ascore(JudgeItem(state.persona, t.user, t.reply, history))
                                              for t, history in todo))
        except Exception as exc:
            error = redact(f"judge error: {exc}")
        with session.lock:
            for n, (turn, _) in enumerate(todo):
                _apply_verdict(turn, None if verdicts is None else verdicts[n], error)
        await self._ahandover()
        return verdicts[0] if verdicts else None

    def _judged(self, record: TurnRecord) -> None:
        if record.turn in self.judged:
            self.judged[record.turn].set()
        if record.error is not None and self.failure is None:
            self.failure = (f"the user simulator failed: {record.user.error}" if not record.user.ok
                            else f"the assistant failed: {record.reply.error}")

    # -- the task and its driver -----------------------------------------------------------------------
    async def _main(self, turns: int, started: Future) -> None:
        session = self.session
        state = ConversationState(session.persona, session.lanes[0].history(), turns_done=session.n_turns)
        conversation = ConversationRoles(self.backends[0], self.user, None, self.roles.reply_config())
        task = asyncio.create_task(converse(state, state.turns_done + turns, conversation, self._judged,
                                            reply=self._reply, score=self._score))
        started.set_result((asyncio.get_running_loop(), task))
        try:
            await task
        finally:
            for backend in {id(b): b for b in (*self.backends, self.user.backend)}.values():
                await backend.aclose()

    def run(self, turns: int) -> Iterator[ChatSession]:
        with self.session.lock:
            self.backends = [self.roles.assistant(lane.model) for lane in self.session.lanes]
        self.user = self.roles.simulator()
        started: Future = Future()
        outcome: list[BaseException] = []

        def thread_main():
            try:
                asyncio.run(self._main(turns, started))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            finally:
                self.events.put(_DONE)

        worker = threading.Thread(target=contextvars.copy_context().run, args=(thread_main,),  # the session's scope
                                  name="aloe-space-autoplay", daemon=True)
        worker.start()
        item = None
        try:
            while (item := self.events.get()) is not _DONE:
                yield self.session
                self._release(item)
        except BaseException:  # closed (Stop, a dropped connection) or failed: cancel the task, drop the half turn
            self.closed = True
            if started.done():
                loop, task = started.result()
                loop.call_soon_threadsafe(task.cancel)
            while item is not _DONE:
                if item is not None:
                    self._release(item)
                item = self.events.get()
            worker.join()
            self._drop_unfinished()
            raise
        worker.join()
        self._drop_unfinished()
        errors = [e for e in outcome if not isinstance(e, asyncio.CancelledError)]
        if errors:
            raise errors[0]
        if self.failure is not None:
            raise SpaceError(self.failure)

    def _drop_unfinished(self) -> None:
        """Remove every turn this auto-play added whose reply did not finish in every lane (lanes stay aligned)."""
        with self.session.lock:
            for made in self.made.values():
                if all(turn.done for _, turn in made):
                    continue
                for lane, _ in made:
                    lane.turns[:] = [t for t in lane.turns if not any(t is turn for _, turn in made)]


# ---------------------------------------------------------------------------------------------------
# What the UI shows
# ---------------------------------------------------------------------------------------------------
def score_badge(turn: Turn) -> str:
    if turn.judge == "scored":
        return f"judge {turn.score:.2f} / 5"
    if turn.judge == "failed":
        return f"judge failed: {turn.judge_error}"
    return "judge: scoring..."


def chat_messages(lane: Lane) -> list[dict]:
    """Chatbot messages: each reply carries its score (or that it is pending) beside it."""
    messages = []
    for turn in lane.turns:
        messages.append({"role": "user", "content": turn.user})
        if turn.reply:
            messages.append({"role": "assistant", "content": f"{turn.reply}\n\n`{score_badge(turn)}`"})
    return messages


def curve_rows(lane: Lane) -> list[dict]:
    """Plot rows (turn, value, series): the scores and their trend line, both present from turn 1 on."""
    scores = lane.scores()
    scored = [(k, s) for k, s in enumerate(scores, 1) if s is not None]
    rows = [{"turn": k, "value": s, "series": "score"} for k, s in scored]
    trend = trend_line(scores)
    if trend is not None:
        rows += [{"turn": k, "value": v, "series": "trend"} for k, v in enumerate(trend, 1)]
    return rows


def lane_summary(lane: Lane) -> str:
    """One line per lane: the scores so far and the running IR of this conversation."""
    scores = lane.scores()
    shown = ", ".join("…" if t.judge == "pending" else ("×" if t.score is None else f"{t.score:.2f}")
                      for t in lane.turns) or "none yet"
    metrics = running_metrics(scores)
    if metrics is None:
        why = "needs 2 scored turns" if all(s is not None for s in scores) else "a turn has no score"
        ir = f"running IR: — ({why})"
    else:
        n_ir = "—" if metrics["N_IR"] is None else f"{metrics['N_IR']:+.3f}"
        ir = f"running IR: {metrics['IR']:+.3f} · N-IR: {n_ir} · AL avg: {metrics['AL_avg']:.2f}"
    return f"**{lane.model}** · scores by turn: {shown} · {ir}"


def export(session: ChatSession, roles: SpaceRoles | None = None) -> dict:
    """The conversation with scores, as a JSON-ready dict (what the Export button saves); secrets scrubbed."""
    with session.lock:
        return scrub({
            "format": "aloe-bench-space-conversation/1",
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "persona": None if session.persona is None else session.persona.to_dict(),
            "judge": None if roles is None else {"model": roles.config.judge_model, "preset": roles.config.judge_preset},
            "revealed": {"text": session.revealed, "after_turns": session.revealed_turns},
            "lanes": [{
                "model": lane.model,
                "turns": [{"turn": k, "user": t.user, "reply": t.reply, "score": t.score, "judge": t.judge,
                           "judge_error": t.judge_error, "distribution": t.distribution, "latency_s": t.latency_s}
                          for k, t in enumerate(lane.turns, 1)],
                "running": running_metrics(lane.scores()),
            } for lane in session.lanes],
        })
