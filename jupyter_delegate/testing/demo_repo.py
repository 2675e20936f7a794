"""The demo's sample repository: a tiny shop with a real bug and a failing test.

`make_demo_repo(path)` creates a git repository on branch `main` holding `shop/cart.py`,
whose `apply_discount` divides the percentage by 10 instead of 100, and a `unittest`
suite that fails because of it (`python3 -m unittest discover -s tests -q`). The bundled
`demo` scenario fixes exactly that line; the bundled `plan` scenario plans receipts for
the shop in three subtasks, one of them that fix. Standard library only, so the check
runs anywhere Python 3 does.
"""

from __future__ import annotations

from pathlib import Path

import git

CHECK = "python3 -m unittest discover -s tests -q"
BUGGY_LINE = "    return amount - amount * percent / 10"
FIXED_LINE = "    return amount - amount * percent / 100"

CART = f'''"""Cart arithmetic: totals and discounts."""


def total(items):
    """The sum of price * quantity over (price, quantity) pairs."""
    return sum(price * qty for price, qty in items)


def apply_discount(amount, percent):
    """`amount` reduced by `percent` per cent."""
{BUGGY_LINE}
'''

TEST_CART = """import unittest

from shop.cart import apply_discount, total


class CartTest(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total([(2.5, 2), (1.0, 3)]), 8.0)

    def test_empty_cart(self):
        self.assertEqual(total([]), 0)

    def test_discount_takes_percent_off(self):
        self.assertAlmostEqual(apply_discount(200.0, 10), 180.0)


if __name__ == "__main__":
    unittest.main()
"""

README = f"""# shop

A tiny shopping cart. Run the tests with:

    {CHECK}
"""

AGENTS = f"Conventions: standard library only; small functions; run `{CHECK}` before finishing.\n"

FILES = {
    "shop/__init__.py": '"""A tiny shop."""\n',
    "shop/cart.py": CART,
    "tests/test_cart.py": TEST_CART,
    "README.md": README,
    "AGENTS.md": AGENTS,
    ".gitignore": "__pycache__/\n*.pyc\n",
}


def make_demo_repo(path: Path) -> Path:
    """Create the demo repository at `path` (new or empty) with one commit; returns it."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty; the demo repository needs a fresh directory")
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Demo User")
        config.set_value("user", "email", "demo@example.com")
    for name, text in FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    repo.git.add("-A")
    repo.git.commit("-q", "--no-verify", "--no-gpg-sign", "-m", "Shop: cart totals and discounts")
    repo.close()
    return path
