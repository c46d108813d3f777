from vbot_cdr import VBotClient


async def test_count_over_loopback(client: VBotClient) -> None:
    """countAll over real HTTP returns the number of records the fake serves."""
    assert await client.count_calls() == 250
