"""clean_str follows the DSTC-7 tokenizers.py step by step."""

import pytest

from dstc.tokenizers import clean_str


@pytest.mark.parametrize(
    "text, cleaned",
    [
        # the DSTC-7 README example: URL glued to text, emoticon kept, contraction split
        (
            " I don't know:). how about this?https://github.com/golsun/deep-RL-time-series",
            "i do n't know :) . how about this ? __url__",
        ),
        ("see HTTPS://Example.COM/a?b=1 and http://x.y", "see __url__ and __url__"),
        ("www.example.com is not a URL here", "www.example.com is not a url here"),
    ],
)
def test_urls(text, cleaned):
    assert clean_str(text) == cleaned


def test_markdown_links():
    # The link text survives, the bracket/URL part goes (spaced form, as Reddit dumps
    # tokenised by the DSTC pipeline look).
    assert clean_str("please try [ GitHub ] ( https://github.com )") == "please try github"
    assert clean_str("a [b c] (http://x.com/y ) d") == "a b c d"
    # Faithful quirk: in the compact form the URL step swallows the closing ")" together
    # with the URL, so the markdown pattern no longer matches and only the URL is replaced.
    assert clean_str("see [the docs](https://x.org/a) now") == "see the docs ( __url__ now"


def test_contractions():
    assert clean_str("I won't go, I can't") == "i will n't go , i can n't"
    assert clean_str("WON'T CAN'T") == "will n't can n't"
    assert clean_str("he's we're I'm you'll they've I'd shouldn't") == (
        "he 's we 're i 'm you 'll they 've i 'd should n't"
    )


def test_characters_outside_the_alphabet_are_dropped():
    assert clean_str('Café — naïve & <b>bold</b> #tag @user 100% "ok"?') == (
        'caf na ve b bold b tag user 100 " ok " ?'
    )
    assert clean_str("🙂🙂") == ""
    assert clean_str("  lots   of\tspace  ") == "lots of space"


def test_url_marker_starts_at_the_first_http_of_a_token():
    # Everything from the FIRST "http" of a whitespace token on is the URL, a second URL
    # inside it (a redirect parameter) included.
    assert clean_str("see:http://a.com/?u=http://b.com ok") == "see : __url__ ok"
