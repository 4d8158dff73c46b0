"""The Sphinx site: every README "Use" name and every public name has an entry; math renders.

``sphinx-build -W`` itself runs in ``scripts/test.sh``; the chromium test builds the site again
with a local MathJax and is skipped where no browser or no local MathJax is installed.
"""

import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / 'docs'
MATHJAX = Path(os.environ.get('GRAPHOPS_MATHJAX', '/usr/share/javascript/mathjax/MathJax.js'))
DIRECTIVE = re.compile(r'^\.\. auto(?:class|function|exception|data|module)::\s+(\S+)', re.M)


def documented() -> set[str]:
    return {m for page in DOCS.glob('*.rst') for m in DIRECTIVE.findall(page.read_text())}


def readme_use_names() -> list[str]:
    """``module.name`` for every name the README's "Use" code block imports."""
    text = (REPO / 'README.md').read_text()
    section = text.split('## Use', 1)[1].split('\n## ', 1)[0]
    code = section.split('```python', 1)[1].split('```', 1)[0]
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                obj = getattr(module, alias.name)
                if not isinstance(obj, types.ModuleType):
                    names.append(f'{node.module}.{alias.name}')
    return names


def test_readme_use_section_names_are_documented():
    names = readme_use_names()
    assert len(names) >= 15 and 'graphops.nn.RGCNConv' in names
    missing = [n for n in names if n not in documented()]
    assert not missing, f'add these to a page under docs/: {missing}'


def test_every_public_name_has_a_page_entry():
    sys.path.insert(0, str(DOCS))
    try:
        conf = importlib.import_module('conf')
    finally:
        sys.path.remove(str(DOCS))
    missing = [n for n in conf.public_names() if n not in documented()]
    assert not missing, f'add these to a page under docs/: {missing}'


def chromium() -> str | None:
    return shutil.which('chromium') or shutil.which('chromium-browser')


@pytest.mark.skipif(chromium() is None, reason='no chromium installed (apt install chromium)')
@pytest.mark.skipif(not MATHJAX.is_file(), reason='no local MathJax (apt install libjs-mathjax)')
def test_math_renders_in_headless_chromium(tmp_path):
    out = tmp_path / 'html'
    env = {**os.environ, 'GRAPHOPS_MATHJAX': str(MATHJAX), 'OMP_NUM_THREADS': '1'}
    build = [sys.executable, '-m', 'sphinx', '-W', '-q', '-b', 'html', str(DOCS), str(out)]
    done = subprocess.run(build, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    page = out / 'relational.html'
    html = page.read_text()
    assert MATHJAX.as_uri() in html
    formulas = html.count('class="math')
    assert formulas >= 3  # RGCNConv's and RGCN's equations

    browser = [
        chromium(),
        '--headless',
        '--no-sandbox',  # root in a container
        '--disable-gpu',
        '--allow-file-access-from-files',
        '--virtual-time-budget=20000',  # let MathJax typeset before the snapshot
        '--window-size=1200,1600',
    ]
    dom = subprocess.run(
        [*browser, '--dump-dom', page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    # MathJax replaces each TeX source by typeset spans; an error shows as "Math Processing Error".
    rendered = len(re.findall(r'id="MathJax-Element-\d+-Frame"', dom))
    assert rendered >= formulas, (rendered, formulas)
    assert 'Math Processing Error' not in dom and 'class="MathJax_Error"' not in dom
    assert 'class="MathJax_Display"' in dom  # the display equations are typeset as blocks

    shot = tmp_path / 'relational.png'
    subprocess.run(
        [*browser, f'--screenshot={shot}', page.as_uri()], capture_output=True, timeout=120
    )
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
