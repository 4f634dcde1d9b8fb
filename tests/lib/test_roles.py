import pytest

from lib.errors import PermissionDeniedError
from lib.roles import PERMISSIONS, Action, Operator, Role, authorize


def test_admin_may_do_every_operator_action() -> None:
    admin = Operator.from_role_names("alice", ["admin"])
    for action in Action:
        if action is not Action.MANAGE_OWN_CONNECTION:
            assert authorize(admin, action, session=None) is admin


def test_manager_sees_only_overview_and_metrics() -> None:
    manager = Operator.from_role_names("max", ["manager"])
    allowed = {a for a in Action if manager.can(a)}
    assert allowed == {Action.VIEW_OVERVIEW, Action.VIEW_METRICS}
    with pytest.raises(PermissionDeniedError, match="max \\(manager\\) may not request payout"):
        authorize(manager, Action.REQUEST_PAYOUT, session=None)


def test_finance_approves_but_never_requests_payouts() -> None:
    finance = Operator.from_role_names("fiona", ["finance"])
    assert finance.can(Action.APPROVE_PAYOUT)
    assert not finance.can(Action.REQUEST_PAYOUT)
    assert not finance.can(Action.GENERATE_LINK)


def test_unknown_role_names_grant_nothing() -> None:
    nobody = Operator.from_role_names("eve", ["root", "superuser"])
    assert nobody.roles == frozenset()
    with pytest.raises(PermissionDeniedError):
        authorize(nobody, Action.VIEW_OVERVIEW, session=None)
    assert Operator.from_role_names("eve", None).roles == frozenset()


def test_anonymous_is_refused() -> None:
    with pytest.raises(PermissionDeniedError, match="signed in"):
        authorize(None, Action.VIEW_OVERVIEW, session=None)
    with pytest.raises(PermissionDeniedError, match="signed in"):
        authorize(Operator(username="", roles=frozenset({Role.ADMIN})), Action.VIEW_OVERVIEW,
                  session=None)


def test_freelancer_token_cannot_act_as_operator() -> None:
    freelancer = Operator(username="freelancer:7", roles=frozenset({Role.FREELANCER}))
    assert PERMISSIONS[Role.FREELANCER] == {Action.MANAGE_OWN_CONNECTION}
    with pytest.raises(PermissionDeniedError):
        authorize(freelancer, Action.REQUEST_PAYOUT, session=None)
