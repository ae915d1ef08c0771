from __future__ import annotations

import click

from toolkit.cli.options import journal_option


@click.command("demo")
@journal_option
@click.option("--runs", type=click.IntRange(1), default=2000, show_default=True, help="Agent runs to generate.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed (same seed, same events).")
def command(journal_path: str, runs: int, seed: int) -> None:
    """Write a synthetic fleet of agent runs into the journal (created if absent) and summarise it.

    Several agents and models, tool calls with failures and retry loops, LLM calls with cached
    and reasoning tokens and cost, correlation and causation ids, traceparents, a multi-day
    spread, a few runs that blow a budget. Rerunning with the same seed adds nothing (event ids
    are deterministic).

    \b
    Example:
      journal demo -j data/demo-journal --runs 2000 --seed 7
    """
    from toolkit.analysis.demo_summary import summarise_journal
    from toolkit.errors import DuplicateEventError
    from toolkit.ingest.demo import estimate_events, write_demo
    from toolkit.journal import Journal
    from toolkit.reports.progress import progress_bar
    from toolkit.reports.tables import write_table

    journal = Journal.create(journal_path, exist_ok=True)
    try:
        with progress_bar("writing demo events", estimate_events(runs)) as advance:
            result = write_demo(journal, runs, seed=seed, progress=advance)
    except DuplicateEventError as e:  # the same ids, other content: another --runs, or another generator
        held = sum(1 for sid in journal.heads() if sid.startswith(f"run-{seed}-"))
        if held != runs:  # the runs are spread over the days by their number: other times, other content
            raise DuplicateEventError(
                f"{journal.path} holds {held} demo runs of seed {seed} (journal demo --runs {held}), not "
                f"{runs}: the same seed with another --runs gives the same event ids other times and content "
                f"({e.message})",
                hint=f"run journal demo -j {journal.path} --runs {held} --seed {seed}, or delete the generated "
                f"journal (rm -rf {journal.path}) and run the command again, or write the demo to another "
                "journal with -j",
            ) from e
        raise DuplicateEventError(
            f"{journal.path} holds demo runs of seed {seed} that an earlier version of the demo generator "
            f"wrote (the same event ids with other content: {e.message})",
            hint=f"the demo journal is generated data: delete it (rm -rf {journal.path}) and run the command "
            "again, or write the demo to another journal with -j",
        ) from e
    click.echo(
        f"demo: {result.runs} runs, {result.events} events generated, {result.appended} appended, "
        f"{result.skipped} already present -> {journal.path}",
        err=True,
    )
    overview, by_model = summarise_journal(journal)
    for k, v in overview.items():
        click.echo(f"{k:>10}: {v}")
    write_table(by_model, "table", title="tokens and cost by model")
    # one run, explained event by event, and what it knew at two moments (journal replay / state)
    from toolkit.analysis.run_story import story_of_run

    story = story_of_run(journal)
    write_table(story.timeline.to_arrow(), "table", title=f"one run, explained: journal replay {story.stream_id}")
    write_table(
        story.states.to_arrow(), "table", title=f"its state at versions {story.versions[0]} and {story.versions[1]}"
    )
