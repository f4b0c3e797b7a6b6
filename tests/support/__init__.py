"""Test helpers: fake servers, reference implementations and small setups the tests share. Never imported
by the product."""
