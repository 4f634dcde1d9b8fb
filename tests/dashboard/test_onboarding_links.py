"""The Onboarding links page: add a freelancer, issue OAuth and onboarding links, see them."""

from __future__ import annotations

import pytest

from lib.connect_flow import create_oauth_link
from lib.errors import PermissionDeniedError
from lib.link_queries import recent_links
from tests.dashboard import emulator_env
from tests.dashboard.emulator_env import (
    OPERATORS,
    errors,
    freelancer_named,
    open_page,
    run_page_script,
    texts,
)

stripe_env, world = emulator_env.stripe_env, emulator_env.world  # fixtures


def add(at, name: str, email: str, country: str = "US"):
    at.text_input(key="onboarding_links_name").input(name)
    at.text_input(key="onboarding_links_email").input(email)
    at.text_input(key="onboarding_links_country").input(country)
    at.button(key="FormSubmitter:onboarding_links_new_freelancer-Add freelancer").click()
    return at.run()


def test_empty_database_renders(app, stripe_env) -> None:
    at = open_page(app, "onboarding_links.py", "admin")
    assert not at.exception, at.exception
    assert "No freelancer matches" in texts(at)
    assert "No links issued yet." in texts(at)
    assert at.button(key="onboarding_links_generate").disabled


def test_add_a_freelancer_then_issue_an_oauth_link(app, world) -> None:
    at = add(open_page(app, "onboarding_links.py", "admin"), "Grace Hopper", "grace@example.com")
    assert not at.exception, at.exception
    grace = freelancer_named(world.session_factory, "Grace Hopper")
    assert grace is not None and grace.country == "US"
    assert "Added Grace Hopper" in texts(at)
    assert at.selectbox(key="onboarding_links_freelancer").value == grace.id
    at.radio(key="onboarding_links_method").set_value(
        "OAuth link: connect an existing Standard account")
    at = at.button(key="onboarding_links_generate").click().run()
    assert not at.exception, at.exception
    url = at.code[0].value
    assert url.startswith(world.emulator.base_url) and "state=" in url
    assert "expires in" in texts(at)
    links = at.dataframe[0].value
    assert list(links["Status"]) == ["Pending"]
    assert list(links["Method"]) == ["OAuth (Standard account)"]


def test_onboarding_link_creates_the_express_account(app, world) -> None:
    fid = world.freelancer(name="Nina New", connected=False)
    before = world.emulator.state()["counts"]["accounts"]
    at = open_page(app, "onboarding_links.py", "admin")
    assert at.selectbox(key="onboarding_links_freelancer").value == fid
    at = at.button(key="onboarding_links_generate").click().run()
    assert not at.exception, at.exception
    assert at.code[0].value.startswith(world.emulator.base_url)
    assert world.emulator.state()["counts"]["accounts"] == before + 1
    assert list(at.dataframe[0].value["Method"]) == ["Onboarding link (Express)"]


def test_a_bad_email_is_one_clear_message(app, stripe_env) -> None:
    at = add(open_page(app, "onboarding_links.py", "admin"), "Bad Email", "not-an-email")
    assert not at.exception
    assert errors(at) == ["Enter a valid email address (name@example.com)."]


def test_a_duplicate_email_is_refused(app, world) -> None:
    world.freelancer(name="Ada One", email="ada@example.com", connected=False)
    at = add(open_page(app, "onboarding_links.py", "admin"), "Ada Two", "ada@example.com")
    assert any("already exists" in e for e in errors(at))


@pytest.mark.parametrize("role", ["finance", "manager"])
def test_other_roles_are_refused(app, stripe_env, role: str) -> None:
    at = app(as_user=role).run()
    with pytest.raises(ValueError):
        at.switch_page("../pages/onboarding_links.py")
    at = run_page_script("onboarding_links.py", role)
    assert not at.exception
    assert errors(at) == [f"{role} ({role}) may not generate link."]


@pytest.mark.parametrize("role", ["finance", "manager"])
def test_lib_refuses_links_for_other_roles(world, role: str) -> None:
    fid = world.freelancer(connected=False)
    with world.session_factory() as session, pytest.raises(PermissionDeniedError):
        create_oauth_link(session, gateway=world.gateway, settings=world.settings,
                          operator=OPERATORS[role], freelancer_id=fid)
    with world.session_factory() as session, pytest.raises(PermissionDeniedError):
        recent_links(session, operator=OPERATORS[role])
