"""The event catalogue (every package's events.py) against the code: every topic emitted anywhere is listed,
every handler is declared, and every topic a resident hears about has its templates, category and inbox entry.

So a new event cannot be added silently: emit it without listing it, or list it as resident-visible without
a template, and this file fails.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend import wiring
from backend.jobs import outbox
from backend.jobs.outbox import Registry
from backend.jobs.topics import PACKAGES, ROOT, Topic, catalogue
from notifications import handlers, render


@dataclass(frozen=True)
class Site:
    """One call of the outbox's emit in the code, and the topics it can emit (None: not resolved)."""

    path: str
    line: int
    function: str
    topics: frozenset[str] | None


def _dynamic_sites() -> dict[tuple[str, str], frozenset[str]]:
    """Emit calls whose topic is a variable, with every topic the variable can hold, read from the code itself
    where it can be. A new call with a variable topic fails the scan until it is declared here."""
    from backend.cases import events as case_events
    from backend.cases import statemachine

    return {
        # The topic of the state entered (approved, rejected, delivered...): the state machine's own table.
        ("backend/cases/statemachine.py", "transition"): frozenset(statemachine._TOPIC_ON_ENTRY.values()),
        # warn_replies calls _warn once for complaints and once for rectifications.
        ("backend/cases/evaluation.py", "_warn"): frozenset({case_events.COMPLAINT_DEADLINE_WARNING,
                                                              case_events.RECTIFICATION_DEADLINE_WARNING}),
    }


def _source_files() -> Iterator[Path]:
    for top in PACKAGES:
        yield from sorted((ROOT / top).rglob("*.py"))


def _resolve(node: ast.expr, names: dict[str, Any]) -> Any:
    """The object a name or a dotted attribute of a module's globals refers to; None when it is not one."""
    if isinstance(node, ast.Name):
        return names.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, names)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def emit_sites(path: Path, source: str, names: dict[str, Any]) -> list[Site]:
    """Every call named `emit` in `source`, with its topic resolved against the module's globals `names`.

    A call named `emit` that is not the outbox's is kept with topics None only if its callee cannot be
    resolved at all: then nobody can tell, and it must be looked at.
    """
    tree = ast.parse(source)
    sites: list[Site] = []

    def local_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
        args = fn.args
        found = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
        found |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        return found | {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    def visit(node: ast.AST, function: str, local: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner, inner_local = function, local
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner, inner_local = child.name, local | local_names(child)
            if isinstance(child, ast.Call):
                callee = child.func
                named = (isinstance(callee, ast.Name) and callee.id == "emit") or (
                    isinstance(callee, ast.Attribute) and callee.attr == "emit")
                target = _resolve(callee, names) if named else None
                if named and (target is outbox.emit or target is None):
                    topic_node = child.args[0] if child.args else next(
                        (k.value for k in child.keywords if k.arg == "topic"), None)
                    topics: frozenset[str] | None = None
                    if isinstance(topic_node, ast.Constant) and isinstance(topic_node.value, str):
                        topics = frozenset({topic_node.value})
                    elif topic_node is not None and target is not None:
                        root = topic_node
                        while isinstance(root, ast.Attribute):
                            root = root.value
                        # A function's own variable is not the module's global of the same name.
                        shadowed = isinstance(root, ast.Name) and root.id in local
                        value = None if shadowed else _resolve(topic_node, names)
                        topics = frozenset({value}) if isinstance(value, str) else None
                    sites.append(Site(str(path.relative_to(ROOT)) if path.is_absolute() else str(path),
                                      child.lineno, function, topics if target is not None else None))
            visit(child, inner, inner_local)

    visit(tree, "<module>", set())
    return sites


def all_emit_sites() -> list[Site]:
    sites: list[Site] = []
    for path in _source_files():
        source = path.read_text(encoding="utf-8")
        if "emit(" not in source:
            continue
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        sites += emit_sites(path, source, vars(module))
    return sites


def emitted_topics(sites: list[Site], dynamic: dict[tuple[str, str], frozenset[str]]) -> tuple[set[str], list[str]]:
    """(every topic the code can emit, the sites nobody can account for)."""
    topics: set[str] = set()
    unknown: list[str] = []
    for site in sites:
        if site.topics is not None:
            topics |= site.topics
        elif (site.path, site.function) in dynamic:
            topics |= dynamic[(site.path, site.function)]
        else:
            unknown.append(f"{site.path}:{site.line} ({site.function})")
    return topics, unknown


def package_of(module: str) -> str:
    """backend.hall_sync.handlers -> hall_sync; notifications.handlers -> notifications."""
    parts = module.split(".")
    return parts[1] if parts[0] == "backend" and len(parts) > 2 else parts[0]


def subscriber_problems(cat: dict[str, Topic], registry: Registry) -> list[str]:
    problems: list[str] = []
    for name, fns in sorted(registry.handlers.items()):
        if name not in cat:
            problems.append(f"{name}: handled by {sorted({package_of(f.__module__) for f in fns})} but listed in no "
                            f"events.py")
    for name, topic in sorted(cat.items()):
        actual = {package_of(f.__module__) for f in registry.for_topic(name)}
        if actual != set(topic.subscribers):
            problems.append(f"{name}: {topic.module} says subscribers {sorted(topic.subscribers)}, "
                            f"the handlers registered are {sorted(actual)}")
    return problems


def template_problems(cat: dict[str, Topic], templates: render.Catalogue, planned: tuple[str, ...]) -> list[str]:
    """What a topic's audience needs from notifications and does not have."""
    problems: list[str] = []
    for name in sorted(templates.topics() - set(cat)):
        problems.append(f"{name}: has a template but is in no events.py")
    for name, topic in sorted(cat.items()):
        variants = templates.variants(name)
        if topic.audience == "internal":
            if variants or name in planned:
                problems.append(f"{name}: internal, yet it has a template or notifications plan it")
            continue
        if name not in planned:
            problems.append(f"{name}: {topic.audience}-visible but not in notifications.handlers.TOPICS")
        if not variants:
            problems.append(f"{name}: {topic.audience}-visible but has no template")
            continue
        if topic.audience == "resident" and all(t.when for t in variants):
            problems.append(f"{name}: every template has a `when`: some of these events would tell no one")
        for t in variants:
            if t.silent:
                continue  # tells no one on purpose, when its `when` holds (loaded only with one)
            if t.audience != topic.audience:
                problems.append(f"{t.key}: written for {t.audience}, the topic is {topic.audience}-visible")
            if not (t.inbox.get("title") and t.inbox.get("body")):
                problems.append(f"{t.key}: no inbox entry")
            if topic.audience != "resident":
                continue
            if t.category not in templates.categories:
                problems.append(f"{t.key}: no category")
            if t.wechat is None or t.alipay is None or t.page is None:
                problems.append(f"{t.key}: a resident's message needs WeChat, Alipay and a page")
            if templates.required(t) and t.sms is None:
                problems.append(f"{t.key}: required ({t.category}) but no SMS to fall back to")
    return problems


# ---- the catalogue against the code -----------------------------------------------------------


def test_every_topic_emitted_anywhere_is_in_a_catalogue_and_every_listed_topic_is_emitted() -> None:
    cat = catalogue()
    sites = all_emit_sites()
    assert len(sites) >= 20  # the scan found the code's emit calls (a broken scan must not pass vacuously)
    topics, unknown = emitted_topics(sites, _dynamic_sites())
    assert unknown == [], "emit calls whose topic cannot be read: declare them in _dynamic_sites"
    assert sorted(topics - set(cat)) == [], "emitted but listed in no events.py"
    assert sorted(set(cat) - topics) == [], "listed in an events.py but emitted nowhere"


def test_subscribers_listed_are_the_handlers_registered() -> None:
    wiring.load()
    assert subscriber_problems(catalogue(), outbox.registry) == []


def test_every_resident_visible_topic_has_templates_a_category_and_an_inbox_entry() -> None:
    cat = catalogue()
    assert template_problems(cat, render.load(), handlers.TOPICS) == []
    # What the issue asked residents to hear about is marked so (and so is held to the rule above).
    for name in ("appointment.cancelled", "appointment.reminder_due", "appointment.no_show", "case.delivered",
                 "complaint.answered", "rectification.closed", "payment.refunded"):
        assert cat[name].audience == "resident", name


def test_each_events_module_is_found_and_its_payloads_name_no_personal_data() -> None:
    cat = catalogue()
    assert {t.module for t in cat.values()} >= {
        "backend.booking.events", "backend.cases.events", "backend.catalog.events", "backend.hall_sync.events",
        "backend.identity.events", "notifications.events", "payments.events"}
    personal = {"name", "id_number", "phone", "address", "applicant_name", "recipient", "content", "answer",
                "response", "comment", "tracking_no"}
    for topic in cat.values():
        assert not personal & set(topic.payload), topic.name


# ---- the checks themselves fail on what they are for --------------------------------------------


def test_the_checks_fail_on_an_unlisted_event_an_untemplated_one_and_an_undeclared_handler() -> None:
    cat = catalogue()
    # An event emitted in new code and listed nowhere.
    source = ("from backend.jobs import outbox\n"
              "async def f(tx):\n    await outbox.emit('appointment.moved', {}, using_db=tx)\n"
              "async def g(tx, topic):\n    await outbox.emit(topic, {}, using_db=tx)\n")
    sites = emit_sites(Path("backend/booking/new.py"), source, {"outbox": outbox})
    topics, unknown = emitted_topics(sites, {})
    assert topics == {"appointment.moved"} and unknown == ["backend/booking/new.py:5 (g)"]
    assert topics - set(cat) == {"appointment.moved"}
    # Listed as resident-visible, without a template or a plan.
    ghost = {**cat, "appointment.moved": Topic("appointment.moved", ("appointment_id",), ("notifications",),
                                                "resident")}
    problems = template_problems(ghost, render.load(), handlers.TOPICS)
    assert problems == ["appointment.moved: resident-visible but not in notifications.handlers.TOPICS",
                        "appointment.moved: resident-visible but has no template"]
    # A required template without SMS, and a handler nobody declared.
    catalogue_ = render.load()
    hall_cancel = catalogue_.templates["appointment.cancelled.by_hall"]
    stripped = render.Catalogue(templates={**catalogue_.templates, hall_cancel.key: _without_sms(hall_cancel)},
                                categories=catalogue_.categories)
    assert template_problems(cat, stripped, handlers.TOPICS) == [
        "appointment.cancelled.by_hall: required (booking_change) but no SMS to fall back to"]
    reg = Registry()
    handlers.register(reg)

    async def listener(event: Any) -> None: ...

    reg.on("calendar.closure_set")(listener)
    assert any(p.startswith("calendar.closure_set: backend.catalog.events says subscribers []")
               for p in subscriber_problems(cat, reg))


def _without_sms(t: render.Template) -> render.Template:
    from dataclasses import replace

    return replace(t, sms=None)


@pytest.mark.parametrize(("name", "count"), [("appointment.cancelled", 3), ("appointment.booked", 2),
                                             ("appointment.no_show", 2), ("case.delivered", 2)])
def test_a_topic_with_variants_always_has_one_for_the_ordinary_case(name: str, count: int) -> None:
    variants = render.load().variants(name)
    assert len(variants) == count and variants[-1].when == {} and all(v.when != {} for v in variants[:-1])
