"""The built-in sentences of the spoken prompts, per language (ISO 639-1), one per situation.

* ``unavailable``  -- the assistant cannot be reached now (network, gateway or speech service
  down or overloaded): it may work again later.
* ``out_of_order`` -- the kiosk cannot work until someone fixes it (credential rejected,
  configuration, microphone, an internal error).

Both end by pointing to the bed's own nurse call, which does not depend on this device. Short
on purpose: a patient in distress listens to the first words. Languages missing here are
spoken in English unless `audio.prompt_texts` gives the sentences (or `audio.prompt_files`
recordings). Every language here has an espeak-ng voice (a test checks it).
"""

from __future__ import annotations

PROMPT_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "unavailable": "The assistant is not available right now. "
                       "Please use your call button if you need a nurse.",
        "out_of_order": "The assistant is out of order. "
                        "Please use your call button if you need a nurse.",
    },
    "de": {
        "unavailable": "Der Assistent ist gerade nicht erreichbar. "
                       "Wenn Sie eine Pflegekraft brauchen, drücken Sie bitte die Ruftaste.",
        "out_of_order": "Der Assistent ist außer Betrieb. "
                        "Wenn Sie eine Pflegekraft brauchen, drücken Sie bitte die Ruftaste.",
    },
    "fr": {
        "unavailable": "L'assistant n'est pas disponible pour le moment. "
                       "Si vous avez besoin d'une infirmière, utilisez le bouton d'appel.",
        "out_of_order": "L'assistant est hors service. "
                        "Si vous avez besoin d'une infirmière, utilisez le bouton d'appel.",
    },
    "es": {
        "unavailable": "El asistente no está disponible en este momento. "
                       "Si necesita una enfermera, use el botón de llamada.",
        "out_of_order": "El asistente está fuera de servicio. "
                        "Si necesita una enfermera, use el botón de llamada.",
    },
    "it": {
        "unavailable": "L'assistente non è disponibile in questo momento. "
                       "Se ha bisogno di un infermiere, usi il pulsante di chiamata.",
        "out_of_order": "L'assistente è fuori servizio. "
                        "Se ha bisogno di un infermiere, usi il pulsante di chiamata.",
    },
    "pt": {
        "unavailable": "O assistente não está disponível neste momento. "
                       "Se precisar de uma enfermeira, use o botão de chamada.",
        "out_of_order": "O assistente está fora de serviço. "
                        "Se precisar de uma enfermeira, use o botão de chamada.",
    },
    "nl": {
        "unavailable": "De assistent is op dit moment niet bereikbaar. "
                       "Als u een verpleegkundige nodig hebt, gebruik dan de belknop.",
        "out_of_order": "De assistent is buiten gebruik. "
                        "Als u een verpleegkundige nodig hebt, gebruik dan de belknop.",
    },
    "pl": {
        "unavailable": "Asystent jest teraz niedostępny. "
                       "Jeśli potrzebna jest pielęgniarka, proszę użyć przycisku wezwania.",
        "out_of_order": "Asystent nie działa. "
                        "Jeśli potrzebna jest pielęgniarka, proszę użyć przycisku wezwania.",
    },
    "tr": {
        "unavailable": "Asistan şu anda kullanılamıyor. "
                       "Hemşireye ihtiyacınız varsa lütfen çağrı düğmesini kullanın.",
        "out_of_order": "Asistan arızalı. "
                        "Hemşireye ihtiyacınız varsa lütfen çağrı düğmesini kullanın.",
    },
    "ar": {
        "unavailable": "المساعد غير متاح الآن. "
                       "إذا كنت بحاجة إلى ممرضة، فاستخدم زر الاستدعاء.",
        "out_of_order": "المساعد معطل. "
                        "إذا كنت بحاجة إلى ممرضة، فاستخدم زر الاستدعاء.",
    },
    "ru": {
        "unavailable": "Ассистент сейчас недоступен. "
                       "Если вам нужна медсестра, нажмите кнопку вызова.",
        "out_of_order": "Ассистент не работает. "
                        "Если вам нужна медсестра, нажмите кнопку вызова.",
    },
    "uk": {
        "unavailable": "Асистент зараз недоступний. "
                       "Якщо вам потрібна медсестра, натисніть кнопку виклику.",
        "out_of_order": "Асистент не працює. "
                        "Якщо вам потрібна медсестра, натисніть кнопку виклику.",
    },
}
