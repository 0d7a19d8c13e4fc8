"""The web page in a real browser: Debian's Chromium, headless, driven by Selenium, against a
server the test starts. Chromium's fake microphone plays a sample file; the page must show
its words live (getUserMedia -> AudioWorklet at 16 kHz -> WebSocket), and a file dropped on
the page or chosen in it must come back transcribed. The server asks for an API key, so the
page's key field is what lets it in."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, read_samples_manifest
from server_harness import running_server, write_keys

from asr_adapt.server.options import ServeOptions

pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
KEY = "aa-test-page"
MODEL = "whisper-tiny.en"


def browser(fake_microphone: Path):
    """Headless Chromium whose microphone plays ``fake_microphone`` (in a loop), allowed
    without asking. The system's chromedriver: nothing is downloaded."""
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).is_file():
            pytest.skip(f"{program} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={fake_microphone}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def words(text: str) -> list[str]:
    from asr_adapt.data.scoring import normalizer

    return normalizer()(text).split()


def best_prefix_wer(reference: str, heard: str) -> float:
    """WER of the best prefix of ``heard`` against ``reference``: the fake microphone loops,
    so what was heard may run on into the sentence's next playing."""
    from jiwer import wer

    ref, hyp = " ".join(words(reference)), words(heard)
    return min(wer(ref, " ".join(hyp[:n])) if n else 1.0 for n in range(len(hyp) + 1))


@pytest.fixture(scope="module")
def sentence():
    """A sample utterance and its text."""
    utterance = read_samples_manifest("test")[0]
    return SAMPLES / "test" / utterance.audio, utterance.text


@pytest.fixture(scope="module")
def page(tmp_path_factory, sentence):
    """The page of a server that asks for a key, open in a browser whose microphone says the
    sentence (after half a second of silence, then a second of it, so the phrase ends)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("page")
    audio, rate = sf.read(sentence[0], dtype="float32")
    wav = folder / "microphone.wav"  # Chromium's fake microphone reads WAV only
    sf.write(wav, np.concatenate([np.zeros(rate // 2, np.float32), audio, np.zeros(rate, np.float32)]), rate,
             subtype="PCM_16")
    keys = write_keys(folder / "keys.txt", {KEY: "*"})
    with running_server(ServeOptions(api_keys=keys)) as server:
        driver = browser(wav)
        driver.server = server  # for the tests that ask the API themselves
        try:
            driver.get(server.base_url + "/")
            yield driver
        finally:
            driver.quit()


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def wait(driver, condition, seconds: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition)


def sign_in(driver) -> list[str]:
    """Type the key (Enter) and choose the model; return the models the page lists."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    field = driver.find_element(By.ID, "api-key")
    if field.get_attribute("value") != KEY:
        field.clear()
        field.send_keys(KEY, Keys.ENTER)
    wait(driver, lambda d: d.find_element(By.ID, "record").is_enabled())
    select = Select(driver.find_element(By.ID, "model"))
    select.select_by_visible_text(MODEL)
    return [option.text for option in select.options]


def test_without_a_key_the_page_says_so_and_with_it_lists_the_models(page):
    from selenium.webdriver.common.by import By

    page.execute_script("sessionStorage.clear()")
    page.refresh()
    wait(page, lambda d: "API key" in text_of(d, "live-status"))
    assert not page.find_element(By.ID, "record").is_enabled()
    assert MODEL in sign_in(page)
    page.refresh()  # the key stays for the tab's life
    wait(page, lambda d: d.find_element(By.ID, "record").is_enabled())


def test_recording_shows_the_words_live(page, sentence):
    """Record: the sentence's words appear; Stop: the server's last words and "done" arrive.
    The tentative tail is shown apart from the committed words, dimmed."""
    from selenium.webdriver.common.by import By

    sign_in(page)
    record = page.find_element(By.ID, "record")
    record.click()
    reference = words(sentence[1])
    wait(page, lambda d: len(words(text_of(d, "committed"))) >= len(reference))
    assert record.text == "Stop" and record.get_attribute("aria-pressed") == "true"
    record.click()
    wait(page, lambda d: record.text == "Record" and record.is_enabled())
    assert text_of(page, "live-status") == "Done."
    heard = text_of(page, "committed")
    assert best_prefix_wer(sentence[1], heard) <= 0.25, heard
    opacity = page.execute_script("return getComputedStyle(document.getElementById('partial')).opacity")
    assert float(opacity) < 1


def transcribed_by_the_api(server, path: Path) -> str:
    import openai

    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=KEY, max_retries=0, timeout=120)
    with open(path, "rb") as handle:
        return client.audio.transcriptions.create(model=MODEL, file=handle).text


def test_a_chosen_file_and_a_dropped_file_are_transcribed(page):
    """Each shows exactly the text the transcription endpoint gives for the file."""
    from selenium.webdriver.common.by import By

    sign_in(page)
    chosen, dropped = (SAMPLES / "test" / u.audio for u in read_samples_manifest("test")[1:3])
    page.find_element(By.ID, "file-input").send_keys(str(chosen))
    wait(page, lambda d: text_of(d, "file-status") == f"{chosen.name}: done.")
    expected = transcribed_by_the_api(page.server, chosen)
    assert expected and text_of(page, "file-text") == expected

    # A drop: the file, as bytes, wrapped in a DataTransfer and dropped on the zone.
    page.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], arguments[1], { type: "audio/flac" }));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    """, base64.b64encode(dropped.read_bytes()).decode(), dropped.name)
    wait(page, lambda d: text_of(d, "file-status") == f"{dropped.name}: done.")
    expected = transcribed_by_the_api(page.server, dropped)
    assert expected and text_of(page, "file-text") == expected


def test_a_refused_stream_and_a_missing_microphone_are_explained(page):
    """The page says what went wrong, and Record works again afterwards."""
    from selenium.webdriver.common.by import By

    sign_in(page)
    record = page.find_element(By.ID, "record")
    # A model the key may not use (a profile deleted since the list was made, say).
    page.execute_script("const s = document.getElementById('model'); s.add(new Option('nobody', 'nobody')); "
                        "s.value = 'nobody';")
    record.click()
    wait(page, lambda d: "stopped the stream" in text_of(d, "live-status"))
    assert "nobody" in text_of(page, "live-status")
    wait(page, lambda d: record.text == "Record" and record.is_enabled())

    page.execute_script("navigator.mediaDevices.getUserMedia = () => "
                        "Promise.reject(new DOMException('none here', 'NotFoundError'));")
    record.click()
    wait(page, lambda d: text_of(d, "live-status") == "No microphone was found.")
    wait(page, lambda d: record.text == "Record" and record.is_enabled())
    page.refresh()  # the real microphone back for the other tests
