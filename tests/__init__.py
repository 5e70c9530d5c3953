"""The test suite: folders mirror the packages (README: "Where tests live")."""
