import pytest

from lib.errors import ConflictError, ValidationError
from lib.freelancers import create_freelancer, find_by_email, search_freelancers


def test_create_and_find(session_factory) -> None:
    with session_factory.begin() as session:
        create_freelancer(session, name=" Ada Lovelace ", email="Ada@Example.com", country="gb")
    with session_factory() as session:
        found = find_by_email(session, email="ada@example.com")
        assert found is not None and found.name == "Ada Lovelace" and found.country == "GB"
        assert [f.email for f in search_freelancers(session, text="love")] == ["ada@example.com"]


def test_duplicate_email_is_a_conflict_and_keeps_the_session_usable(session_factory) -> None:
    with session_factory.begin() as session:
        create_freelancer(session, name="Ada", email="ada@example.com")
        with pytest.raises(ConflictError):
            create_freelancer(session, name="Other", email="ADA@example.com")
        create_freelancer(session, name="Grace", email="grace@example.com")
    with session_factory() as session:
        assert len(search_freelancers(session)) == 2


@pytest.mark.parametrize(
    ("name", "email", "country"),
    [("", "a@example.com", None), ("A", "not-an-email", None), ("A", "a@example.com", "USA"),
     ("x" * 201, "a@example.com", None), ("A", "<script>@x.com", None)],
)
def test_bad_input_writes_nothing(session_factory, name, email, country) -> None:
    with pytest.raises(ValidationError):
        with session_factory.begin() as session:
            create_freelancer(session, name=name, email=email, country=country)
    with session_factory() as session:
        assert search_freelancers(session) == []
