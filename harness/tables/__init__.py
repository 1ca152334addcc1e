"""The paper's tables as data, the sweep that fills them, and the leaderboard that renders them."""
