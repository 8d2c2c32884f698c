"""Repository requirement lines may only name packages (issue #13, finding 5)."""

import pytest

from shared.requirement_lines import RefusedRequirement, requirement_lines

ALLOWED = """# a comment
tabulate==0.9.0  # pinned
requests[socks]>=2.31 ; python_version >= "3.11"
Torch_Lib
"""


def test_names_with_extras_specifiers_and_markers_pass():
    assert requirement_lines(ALLOWED, "requirements/web.txt") == [
        "tabulate==0.9.0",
        'requests[socks]>=2.31 ; python_version >= "3.11"',
        "Torch_Lib",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "--index-url https://evil.example/simple",
        "-i https://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
        "-f https://evil.example/wheels",
        "--find-links=/tmp",
        "--trusted-host evil.example",
        "-e git+https://evil.example/x.git#egg=x",
        "-r other.txt",
        "-c constraints.txt",
        "evil @ https://evil.example/evil-1.0.tar.gz",
        "evil@file:///etc/passwd",
        "git+https://evil.example/x.git",
        "./local/package",
        "/abs/path/pkg-1.0.tar.gz",
        "https://evil.example/evil-1.0-py3-none-any.whl",
        "tabulate \\\\",
    ],
)
def test_options_direct_references_and_paths_are_refused_with_file_and_line(line):
    with pytest.raises(RefusedRequirement) as refused:
        requirement_lines(f"tabulate\n{line}\n", "requirements/report.txt")
    message = str(refused.value)
    assert message.startswith("requirements/report.txt:2: ")
    assert "KILN_PIP_INDEX_URL" in message
