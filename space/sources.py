"""Which data sources a visitor may open in the Space's reading tabs (Leaderboard, Rate, Runs), and whose
credentials read a `hub:` one.

On the owner's own machine (`config.public` false) any folder or `hub:ORG/NAME` may be typed and a Hub source is
read with the environment's credentials. On a public Space a visitor picks only among the sources the owner
configured, and a Hub source is read with the visitor's own token (signed in) or anonymously: never the owner's.
"""

from __future__ import annotations


def parse_sources(text: str) -> list[str]:
    """A comma-separated list of sources, blanks dropped."""
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def offered_sources(config, *first: str) -> list[str]:
    """The sources the Space offers, in order: `first` (a tab's own setting), the Runs tab's list, the results source."""
    offered: list[str] = []
    for source in [*first, *parse_sources(config.runs), config.results]:
        if source and source not in offered:
            offered.append(source)
    return offered


def check_visitor_source(config, source: str, offered: list[str], error: type[Exception], what: str) -> str:
    """`source`, stripped; on a public Space one not among `offered` raises `error` (typed paths are not read)."""
    source = (source or "").strip()
    if config.public and source not in offered:
        raise error(f"visitors of a public Space pick among the {what} this Space offers ({', '.join(offered)}); "
                    "typed paths are not read")
    return source


def hub_token(config, oauth_token):
    """Credentials for a `hub:` source: None (the environment's) locally; the visitor's token, or False
    (anonymous), on a public Space."""
    if not config.public:
        return None
    return getattr(oauth_token, "token", None) or False
