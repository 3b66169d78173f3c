"""OneThinker pipeline."""
